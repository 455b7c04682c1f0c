"""Airflow's plugin loader must leave our package alone (``plugins/.airflowignore``).

Airflow 3.3 imports every ``*.py`` under the plugins folder as a *top-level* module named after the
file and stores it in ``sys.modules`` before running it, so ``calltouch_metrika/config.py`` would
become ``sys.modules["config"]``, ``storage.py`` ``sys.modules["storage"]`` and
``transforms/requests.py`` would replace the ``requests`` library for the whole process (seen in
``dag.test()`` runs). ``plugins/.airflowignore`` excludes ``calltouch_metrika/``; the package is
imported normally, as ``calltouch_metrika``.

Each check runs Airflow's own loaders in a fresh subprocess configured like ``tests/conftest.py``
(throw-away ``AIRFLOW_HOME``, our dags/plugins folders, no examples), so nothing this test process
has already imported can hide or cause the problem:

* ``core``: ``airflow.plugins_manager.ensure_plugins_loaded()`` (scheduler, dag-processor,
  api-server, the ``airflow`` CLI);
* ``task-sdk``: ``airflow.sdk.plugins_manager.integrate_macros_plugins()``, which the task runner
  calls from ``get_template_context()`` before every task, in workers and in ``dag.test()``.

A negative control runs the same probe on a copy of ``plugins/`` *without* the ignore file and
expects the shadowing, which shows the probe detects exactly the failure the ignore file prevents.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "plugins"
PACKAGE = "calltouch_metrika"
MARK = "PLUGINS-PROBE-RESULT "
LOADERS = ("core", "task-sdk")

# Runs in the subprocess: import ``requests`` first (as a worker has, via HttpHook), run one of
# Airflow's plugin loaders, then report what ``sys.modules`` holds.
PROBE = r"""
import json
import sys
from pathlib import Path

import requests

before = sys.modules["requests"]
loader = sys.argv[1]
if loader == "core":
    from airflow import plugins_manager

    plugins_manager.ensure_plugins_loaded()
elif loader == "task-sdk":
    from airflow.sdk import plugins_manager

    plugins_manager.integrate_macros_plugins()
else:
    raise SystemExit(f"unknown loader {loader!r}")
plugins, import_errors = plugins_manager._get_plugins()

from airflow import settings

package = (Path(settings.PLUGINS_FOLDER) / "calltouch_metrika").resolve()
shadowed = {}
for name, module in list(sys.modules.items()):
    file = getattr(module, "__file__", None)
    if not file or name == "calltouch_metrika" or name.startswith("calltouch_metrika."):
        continue
    if Path(file).resolve().is_relative_to(package):
        shadowed[name] = file
now = sys.modules.get("requests")
print(MARK + json.dumps({
    "plugins_folder": str(settings.PLUGINS_FOLDER),
    "requests_same_object": now is before,
    "requests_file": getattr(now, "__file__", None),
    "requests_has_get": callable(getattr(now, "get", None)),
    "shadowed": shadowed,
    "import_errors": {str(k): str(v) for k, v in import_errors.items()},
    "plugins": [p.name for p in plugins],
}))
"""


def probe_env(airflow_home: Path, plugins_folder: Path) -> dict[str, str]:
    """The environment ``tests/conftest.py`` gives Airflow, with a fresh home and ``plugins_folder``."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "CALLTOUCH_METRIKA_DATA": str(airflow_home / "data"),
        }
    )
    env.pop("PYTHONPATH", None)  # only what Airflow itself puts on sys.path
    return env


def run_probe(tmp_path: Path, plugins_folder: Path, loader: str) -> dict[str, Any]:
    """Run Airflow's ``loader`` in a fresh interpreter on ``plugins_folder``; return its report."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", f"MARK = {MARK!r}\n{PROBE}", loader],
        cwd=tmp_path,  # not the repo root: nothing on sys.path but what Airflow adds
        env=probe_env(home, plugins_folder),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert proc.returncode == 0 and lines, (
        f"plugin probe ({loader}) failed, rc={proc.returncode}\n"
        f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    report = json.loads(lines[-1][len(MARK) :])
    assert Path(report["plugins_folder"]).resolve() == plugins_folder.resolve()
    return report


@pytest.mark.airflow
@pytest.mark.parametrize("loader", LOADERS)
def test_plugin_loading_leaves_requests_and_our_modules_alone(tmp_path: Path, loader: str) -> None:
    assert (PLUGINS / ".airflowignore").is_file(), "plugins/.airflowignore is missing"
    report = run_probe(tmp_path, PLUGINS, loader)

    assert report["requests_same_object"], "the plugin loader replaced sys.modules['requests']"
    assert report["requests_has_get"]
    requests_file = Path(report["requests_file"]).resolve()
    assert "site-packages" in requests_file.parts, requests_file
    assert not requests_file.is_relative_to(PLUGINS.resolve()), requests_file
    assert report["shadowed"] == {}, "modules loaded from plugins/calltouch_metrika under bare names"
    assert report["import_errors"] == {}


@pytest.mark.airflow
@pytest.mark.parametrize("loader", LOADERS)
def test_without_the_ignore_file_the_package_is_loaded_under_bare_names(tmp_path: Path, loader: str) -> None:
    """Negative control: the same probe on a copy of ``plugins/`` lacking ``.airflowignore``."""
    plugins = tmp_path / "plugins"
    shutil.copytree(
        PLUGINS, plugins, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".airflowignore")
    )
    assert not (plugins / ".airflowignore").exists()
    report = run_probe(tmp_path, plugins, loader)

    # config.py, storage.py, ... become top-level "config", "storage", ...
    assert {"config", "storage", "exceptions"} <= report["shadowed"].keys(), report["shadowed"]
    # transforms/requests.py took the "requests" name, even if it then re-imported the library
    assert not report["requests_same_object"]
