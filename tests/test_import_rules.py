"""Who may import whom (docs/design.md "Module map"), checked on the source: every ``import`` of our
package in ``plugins/calltouch_metrika`` and ``dags/`` (module level and inside functions; not under
``if TYPE_CHECKING:``) must be allowed by :data:`ALLOWED`.

A new module needs a line in :data:`ALLOWED` (and in the design doc's map): the test fails naming it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "plugins" / "calltouch_metrika"
DAGS = REPO / "dags"

_BASE = {"constants", "exceptions", "_utils"}

#: layer -> the layers it may import (a layer is a top-level module or subpackage of calltouch_metrika).
ALLOWED: dict[str, set[str]] = {
    # pure data and helpers: nothing of ours
    "__init__": set(),
    "constants": set(),
    "_utils": set(),
    "catalog": set(),
    "provider_info": set(),
    "timetables": set(),
    "exceptions": {"constants"},
    # configuration and wiring (read while DAG files are parsed: never a hook or a transform)
    "config": _BASE | {"catalog", "config_file"},
    "config_file": _BASE | {"config"},
    "storage": _BASE,
    "dag_factory": _BASE | {"config", "storage", "operators", "sensors", "timetables", "notifications"},
    # failure notifications (an SMTP notifier; imported lazily, only for pipelines with ``notify``)
    "notifications": _BASE,
    # HTTP: each API's hook on the shared private modules hooks/_*.py
    "hooks": _BASE | {"hooks"},
    # pure transforms: no I/O, no HTTP, no Airflow task code
    "transforms": _BASE | {"transforms", "catalog"},
    # triggers run in the triggerer: only async hooks (and what they import)
    "triggers": _BASE | {"triggers", "hooks"},
    # sensors: hooks (sync check), triggers (deferral), storage (the plans ledger); never an operator
    "sensors": _BASE | {"sensors", "triggers", "hooks", "storage"},
    # operators: thin, on hooks, transforms, storage and the call ledger; triggers to defer (the account wait)
    "operators": _BASE
    | {
        "hooks",
        "triggers",
        "transforms",
        "storage",
        "config",
        "catalog",
        "ledger",
        "lease",
        "exactly_once",
        "timetables",
        "linkage",
    },
    # the call ledger and its per-counter lease (issue 12)
    "lease": _BASE | {"storage"},
    "ledger": _BASE | {"storage", "lease"},
    "exactly_once": _BASE | {"storage", "ledger", "lease"},
    # the linkage report (issue 14): its dataset, query and web page; reasons from the calls transform
    "linkage": _BASE | {"linkage", "storage", "config", "transforms"},
    # the linkage report's command line (python -m calltouch_metrika.report)
    "report": _BASE | {"linkage", "config"},
    # DAG files only read config and wire
    "dags": {"config", "constants", "dag_factory", "operators", "sensors", "timetables"},
}

#: What a layer must never import, whatever else it may (the rules the issue names).
FORBIDDEN_AT_PARSE = {"hooks", "transforms"}


def _layer_of_file(path: Path) -> str:
    if path.is_relative_to(DAGS):
        return "dags"
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_layers(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, layer) of every runtime import of ``calltouch_metrika.<layer>``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "calltouch_metrika":
                    found.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "calltouch_metrika":
                if len(parts) > 1:
                    found.append((node.lineno, parts[1]))
                else:  # from calltouch_metrika import storage, constants
                    found.extend((node.lineno, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted(DAGS.glob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_follow_the_module_map(path: Path) -> None:
    layer = _layer_of_file(path)
    assert layer in ALLOWED, (
        f"{path.relative_to(REPO)}: layer {layer!r} has no rule; add it to ALLOWED and to docs/design.md"
    )
    own = {layer} if layer in ("hooks", "transforms", "triggers", "sensors", "operators") else set()
    bad = [
        f"line {line}: imports calltouch_metrika.{target}"
        for line, target in _imported_layers(ast.parse(path.read_text(encoding="utf-8")))
        if target not in ALLOWED[layer] | own
    ]
    assert not bad, f"{path.relative_to(REPO)} ({layer}) may import only {sorted(ALLOWED[layer])}: {bad}"


def test_parse_time_layers_never_import_hooks_or_transforms() -> None:
    for layer in ("dags", "config", "dag_factory", "constants", "storage"):
        assert not ALLOWED[layer] & FORBIDDEN_AT_PARSE, layer
    assert "operators" not in ALLOWED["sensors"], "a sensor never imports an operator module"
