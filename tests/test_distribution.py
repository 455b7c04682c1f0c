"""The ``calltouch-metrika`` distribution as a user installs it: the wheel, in a fresh virtualenv.

The wheel is built from this checkout (``pip wheel --no-deps``: the build backend, setuptools, comes from
the package index like ``make install``'s; skipped when it cannot be fetched) and installed with
``pip install --no-index --no-deps`` into a new virtualenv whose only other packages are this
environment's installed distributions (linked in through a ``.pth`` file, minus our editable install):
no other download, a few seconds, yet ``pip check`` there proves the wheel's declared dependencies are met by
real distributions, and Airflow in that virtualenv must find the provider through the wheel's own
entry point. ``-m "not dist"`` skips it.
"""

from __future__ import annotations

import ast
import email
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.dist


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, (
        f"{argv} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy of what the build reads, so no build/ or egg-info is left in the checkout.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "plugins", src / "plugins", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0 and "No matching distribution found for setuptools" in proc.stderr:
        pytest.skip("the build backend (setuptools) cannot be fetched: offline?")
    assert proc.returncode == 0, f"pip wheel exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    (found,) = out.glob("calltouch_metrika-*.whl")
    return found


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name))


def _requires(metadata: email.message.Message) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    return {canonicalize_name(r.name): r for r in reqs if r.marker is None}


def test_wheel_declares_version_license_and_ranged_dependencies(
    wheel: Path, metadata: email.message.Message
) -> None:
    assert metadata["Name"] == "calltouch-metrika"
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {metadata['Version']}" in changelog, "the version has no CHANGELOG.md entry"
    assert "Apache-2.0" in (metadata["License"] or "") + " ".join(
        metadata.get_all("License-Expression") or []
    )
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert any(n.endswith(".dist-info/LICENSE") or "/licenses/LICENSE" in n for n in names), names
        assert not [n for n in names if n.startswith(("sandbox/", "tests/", "dags/", "tools/"))]
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "[apache_airflow_provider]" in entry_points
    requires = _requires(metadata)
    for name in (
        "apache-airflow",
        "apache-airflow-providers-http",
        "apache-airflow-providers-smtp",
        "pandas",
    ):
        assert name in requires, f"{name} is not a declared dependency"
    airflow = requires["apache-airflow"].specifier
    assert "3.3.2" in airflow and "4.0.0" not in airflow and "3.2.0" not in airflow


def test_the_pinned_versions_of_this_repository_fall_in_the_declared_ranges(
    metadata: email.message.Message,
) -> None:
    requires = _requires(metadata)
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            lock[canonicalize_name(name)] = version.strip()
    for name, req in requires.items():
        assert name in lock, f"{name} is declared but not locked"
        assert req.specifier.contains(lock[name]), (
            f"{name}: the lock's {lock[name]} is outside {req.specifier}"
        )


def test_every_third_party_import_of_the_package_is_a_declared_dependency(
    metadata: email.message.Message,
) -> None:
    declared = set(_requires(metadata))
    # Airflow and its providers come with apache-airflow (core, task SDK) or are declared.
    provided_by_airflow = {canonicalize_name(n) for n in ("apache-airflow-core", "apache-airflow-task-sdk")}
    dists_of = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    missing = {}
    for path in (REPO / "plugins" / "calltouch_metrika").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in stdlib or top in ("calltouch_metrika", "__future__"):
                    continue
                dists = {canonicalize_name(d) for d in dists_of.get(top, [top])}
                if top == "airflow":
                    dists = {d for d in dists if d.startswith("apache-airflow")}
                    if dists & (declared | provided_by_airflow):
                        continue
                if not dists & declared:
                    missing.setdefault(top, str(path.relative_to(REPO)))
    assert not missing, f"imported but not declared in pyproject.toml dependencies: {missing}"


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtualenv holding the wheel; its dependencies are this environment's distributions."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    deps = root / "deps"
    deps.mkdir()
    ours = ("calltouch_metrika", "__editable__", "pip", "pip-", "setuptools", "_distutils_hack", "distutils-")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(ours) or entry.suffix == ".pth" or entry.name == "__pycache__":
            continue
        (deps / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    Path(site, "_calltouch_metrika_test_deps.pth").write_text(f"{deps}\n")
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)])
    yield venv


def _clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "CALLTOUCH_METRIKA", "PYTHON", "VIRTUAL_ENV"))
    }
    env["AIRFLOW_HOME"] = str(home)
    return env


def test_the_wheel_installs_into_a_fresh_venv_and_airflow_registers_it(
    fresh_venv: Path, tmp_path: Path
) -> None:
    python = str(fresh_venv / "bin" / "python")
    check = _run([python, "-m", "pip", "check"], cwd=tmp_path)
    assert "No broken requirements found" in check.stdout, check.stdout

    home = tmp_path / "airflow-home"
    env = _clean_env(home)
    listed = _run([python, "-m", "airflow", "providers", "list", "--output", "json"], cwd=tmp_path, env=env)
    providers = {p["package_name"]: p for p in json.loads(listed.stdout[listed.stdout.index("[") :])}
    assert "calltouch-metrika" in providers, sorted(providers)
    assert providers["calltouch-metrika"]["version"] == importlib.metadata.version("calltouch-metrika")

    probe = textwrap.dedent(
        """
        import json, sys
        from airflow.providers_manager import ProvidersManager
        import calltouch_metrika
        from calltouch_metrika import config
        hooks = ProvidersManager().hooks
        print(json.dumps({
            "hooks": {t: hooks[t].hook_class_name for t in ("calltouch", "yandexmetrika", "yandex_metrika")},
            "package": calltouch_metrika.__file__,
            "config": str(config.config_path()),
            "data": config.default_storage_root(),
        }))
        """
    )
    found = json.loads(_run([python, "-c", probe], cwd=tmp_path, env=env).stdout.strip().splitlines()[-1])
    assert found["hooks"] == {
        "calltouch": "calltouch_metrika.hooks.calltouch.CalltouchHook",
        "yandexmetrika": "calltouch_metrika.hooks.metrika.MetrikaHook",
        "yandex_metrika": "calltouch_metrika.hooks.metrika_legacy.LegacyMetrikaHook",
    }
    assert found["package"].startswith(str(fresh_venv)), found["package"]  # the wheel, not the checkout
    assert found["config"] == str(home / "calltouch_metrika" / "pipelines.yaml")
    assert found["data"] == str(home / "calltouch_metrika" / "data")
