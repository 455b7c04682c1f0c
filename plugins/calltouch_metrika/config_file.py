"""Reading the pipelines file: YAML without implicit timestamps, defaults deep-merged, each pipeline
validated on its own (one broken pipeline never hides the others: issue 13 §1), overlaps between
pipelines on one counter, and the report of every error and warning naming file, pipeline and key.

The models and value checks are in :mod:`calltouch_metrika.config`, which also re-exports the names
of this module (``from calltouch_metrika.config import read_config`` keeps working). Imported while DAG
files are parsed: light, like ``config``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from calltouch_metrika.config import Pipeline, PipelinesConfig, config_path
from calltouch_metrika.exceptions import ConfigError


def counter_overlaps(pipelines: list[Pipeline]) -> tuple[list[tuple[str, str]], list[str]]:
    """Pipelines sharing a Metrika counter: ``([(error, later pipeline's name)], [warning])``, each
    message naming both pipelines.

    Two pipelines on one counter and one site must send different calls: identical filters are an
    error (they would send the very same calls); different filters may still select a call twice, a
    warning: the counter's call ledger sends each call once, and the pipeline that runs first sends
    it (with its own price and identifier settings). Different sites never overlap (a callId is
    per site).
    """
    errors: list[tuple[str, str]] = []
    warns: list[str] = []
    for i, a in enumerate(pipelines):
        for b in pipelines[i + 1 :]:
            if a.counter_id != b.counter_id or a.site_id != b.site_id:
                continue
            where = f"pipelines {a.name!r} and {b.name!r} (site {a.site_id} -> counter {a.counter_id})"
            if a.filters == b.filters:
                errors.append(
                    (
                        f"{where}: key 'filters': identical filters send the same calls twice; two pipelines "
                        f"on one counter must send different calls (remove one, or give them different "
                        f"filters); {b.name!r} is not loaded",
                        b.name,
                    )
                )
            else:
                warns.append(
                    f"{where}: key 'filters': the filters may select the same calls; the counter's call "
                    "ledger sends each call once, by whichever pipeline runs first"
                )
    return errors, warns


#: What every pipeline of one ``account`` must share: the account extract reads them in one task.
ACCOUNT_SHARED_KEYS = ("calltouch_conn_id", "timezone", "schedule")


def _root_key(root: str) -> str:
    """``storage_root`` spelled one way, so two spellings of one folder compare equal (``/d`` and ``/d/``)."""
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def account_conflicts(pipelines: list[Pipeline]) -> list[tuple[str, str]]:
    """Pipelines of one ``account`` that cannot be extracted together: ``[(error, pipeline's name)]``.

    One task per account and local day reads every site with one token, so the pipelines of an account
    share ``calltouch_conn_id``, ``timezone`` and ``schedule``: the value most of them have wins (a tie:
    the first pipeline's), and each pipeline with another value is an error and is not loaded, so one
    odd entry never unloads the rest. Two pipelines of the account reading one site into one storage
    root with different filters or phone hashing are an error too (the later one is not loaded): their
    calls files (``site=S/date=D/calls.parquet``) would overwrite each other.
    """
    from collections import Counter

    groups: dict[str, list[Pipeline]] = {}
    for p in pipelines:
        if p.account is not None:
            groups.setdefault(p.account, []).append(p)
    errors: list[tuple[str, str]] = []
    for account, members in groups.items():
        bad: set[str] = set()
        for key in ACCOUNT_SHARED_KEYS:
            counts = Counter(getattr(p, key) for p in members)
            top = max(counts.values())
            winner = next(getattr(p, key) for p in members if counts[getattr(p, key)] == top)
            holders = [p.name for p in members if getattr(p, key) == winner]
            for p in members:
                if p.name in bad or getattr(p, key) == winner:
                    continue
                bad.add(p.name)
                errors.append(
                    (
                        f"pipeline {p.name!r}: key {key!r}: account {account!r} is extracted in one task with "
                        f"{key} {winner!r} (as {len(holders)} of its {len(members)} pipelines have it, e.g. "
                        f"{holders[0]!r}), not {getattr(p, key)!r}; give the pipeline the same {key} or "
                        f"another account; {p.name!r} is not loaded",
                        p.name,
                    )
                )
        sites: dict[tuple[int, str], Pipeline] = {}
        for p in members:
            if p.name in bad:
                continue
            other = sites.setdefault((p.site_id, _root_key(p.storage_root)), p)
            if other is not p and (other.filters, other.hash_phone_numbers) != (
                p.filters,
                p.hash_phone_numbers,
            ):
                errors.append(
                    (
                        f"pipeline {p.name!r}: key 'filters': pipelines {other.name!r} and {p.name!r} of account "
                        f"{account!r} read site {p.site_id} into one storage_root with different filters or "
                        f"hash_phone_numbers: their calls files would overwrite each other; give one its own "
                        f"storage_root; {p.name!r} is not loaded",
                        p.name,
                    )
                )
    return errors


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _format_error(file: str, pipeline: str | None, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(pipeline)"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed; check the spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = f"pipeline {pipeline!r}: " if pipeline else ""
        lines.append(f"{file}: {where}key {loc!r}: {msg}")
    return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: ``start_date: 2026-13-01`` reaches validation as text, so
    the error names the pipeline and the key (PyYAML would raise a bare ``ValueError``)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class ConfigReport:
    """The pipelines file read leniently: valid pipelines, and every error and warning found.

    Each message names the file, the pipeline and the key: ``pipelines.yaml: pipeline 'demo': key
    'counter_id': field required``. A file-level problem (missing, not YAML, no pipelines) leaves
    ``pipelines`` empty with one error.
    """

    file: str
    pipelines: list[Pipeline] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The names (or ``#<n>``) of the pipelines that failed validation.
    broken: list[str] = field(default_factory=list)


def read_config(path: str | os.PathLike[str] | None = None, *, today: date | None = None) -> ConfigReport:
    """Read the pipelines file (default :func:`config_path`) and validate each pipeline on its own.

    Never raises for bad content: one broken pipeline must not hide the others (issue 13 §1).
    """
    p = Path(path) if path is not None else config_path()
    fname = p.name
    report = ConfigReport(file=fname)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        report.errors.append(f"{p}: cannot read the pipelines file ({exc.strerror or exc})")
        return report
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        report.errors.append(f"{fname}: not valid YAML: {exc}")
        return report
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        report.errors.append(
            f"{fname}: the top level must be a mapping with 'pipelines:' (and optional 'defaults:')"
        )
        return report
    unknown = sorted(str(k) for k in set(raw) - {"defaults", "pipelines"})
    if unknown:
        report.errors.append(
            f"{fname}: unknown top-level key(s) {unknown}; expected 'defaults' and 'pipelines'"
        )
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        report.errors.append(f"{fname}: key 'defaults': must be a mapping")
        return report
    items = raw.get("pipelines") or []
    if not isinstance(items, list):
        report.errors.append(f"{fname}: key 'pipelines': must be a list of pipelines")
        return report
    if not items:
        report.errors.append(
            f"{fname}: key 'pipelines': no pipelines configured (the file defines 0), so no calls DAG exists"
        )
        return report

    seen: set[str] = set()
    for i, item in enumerate(items):
        label = f"#{i + 1}"
        if not isinstance(item, dict):
            report.errors.append(
                f"{fname}: pipeline {label}: must be a mapping of keys, got {type(item).__name__}"
            )
            report.broken.append(label)
            continue
        name = item.get("name")
        if name is not None:
            label = str(name)
        try:
            pipeline = Pipeline.model_validate(_deep_merge(defaults, item))
        except ValidationError as exc:
            report.errors.append(_format_error(fname, label, exc))
            report.broken.append(label)
            continue
        if pipeline.name in seen:
            report.errors.append(
                f"{fname}: pipeline {pipeline.name!r}: key 'name': duplicate pipeline name "
                "(the first one with this name is used)"
            )
            report.broken.append(f"{label} (duplicate)")
            continue
        seen.add(pipeline.name)
        report.pipelines.append(pipeline)
        warning = pipeline.start_date_warning(today)
        if warning:
            report.warnings.append(f"{fname}: pipeline {pipeline.name!r}: key 'start_date': {warning}")
    errors, warns = counter_overlaps(report.pipelines)
    report.warnings.extend(f"{fname}: {w}" for w in warns)
    for message, later in errors:  # the later pipeline of an identical pair is not loaded
        report.errors.append(f"{fname}: {message}")
        report.broken.append(later)
        report.pipelines = [p for p in report.pipelines if p.name != later]
    for message, name in account_conflicts(report.pipelines):
        report.errors.append(f"{fname}: {message}")
        report.broken.append(name)
        report.pipelines = [p for p in report.pipelines if p.name != name]
    return report


def load_config(path: str | os.PathLike[str] | None = None) -> PipelinesConfig:
    """Read and validate the whole pipelines file (default :func:`config_path`); strict.

    :raises ConfigError: the file is missing, not YAML, has no pipelines or any pipeline is invalid;
        the message lists every error, each naming the file, the pipeline and the key.
    """
    report = read_config(path)
    if report.errors:
        raise ConfigError("\n".join(report.errors))
    return PipelinesConfig(pipelines=report.pipelines)


def load_valid_config(path: str | os.PathLike[str] | None = None) -> PipelinesConfig:
    """The valid pipelines only: what the DAG files build, so one broken pipeline hides only itself.

    The errors are shown by ``dags/calltouch_config_errors.py`` as its import error.
    """
    return PipelinesConfig(pipelines=read_config(path).pipelines)
