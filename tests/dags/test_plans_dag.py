"""DAG ``calltouch_plans_import``: parsing (no API call, no pandas) and ``dag.test()`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import write_plan

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "calltouch_plans_import.py"
DAG_ID = "calltouch_plans_import"

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


@pytest.fixture
def plans_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pipelines file with two sites and their plan files in a temporary plans folder."""
    plans = tmp_path / "plans"
    plans.mkdir()
    write_plan(
        plans / "a.csv", [f"2026-12-01,2026-12-31,src{i},cpc,,,,Лиды,Все лиды,{i}" for i in range(130)]
    )
    write_plan(plans / "b.csv", ["2026-12-01,2026-12-31,,,,,подарки,Цели,Подписка на рассылку,150"])
    config = tmp_path / "pipelines.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            defaults:
              storage_root: {tmp_path / "data"}
              status_poll_seconds: 0.2
            pipelines:
              - {{name: site_a, site_id: 10001, counter_id: 20001, start_date: 2026-11-01, plans_file: a.csv}}
              - {{name: site_b, site_id: 10002, counter_id: 20002, start_date: 2026-11-01, plans_file: b.csv}}
              - {{name: no_plans, site_id: 10001, counter_id: 20001, start_date: 2026-11-01, filters: {{target_only: true}}}}
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(config))
    monkeypatch.setenv("CALLTOUCH_METRIKA_PLANS_DIR", str(plans))
    return plans


def load_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(DAG_ID)


def run(dag: Any, **conf: Any) -> Any:
    from airflow.utils.state import DagRunState

    # every Param given explicitly: dag.test() on a reused in-memory DAG keeps the previous run's conf
    dr = dag.test(run_conf={"file": "", "dry_run": False, "force": False, **conf})
    assert dr.state == DagRunState.SUCCESS
    assert_plugin_loader_left_our_package_alone()
    return dr


def assert_plugin_loader_left_our_package_alone() -> None:
    """After ``dag.test()``, no module of our package sits in ``sys.modules`` under a bare name.

    ``dag.test()`` runs the tasks in this process, and the task runner runs Airflow's plugin loader
    (``integrate_macros_plugins``), which imports every ``*.py`` under ``plugins/`` that
    ``plugins/.airflowignore`` does not exclude as a top-level module named after the file (that is
    how ``transforms/requests.py`` once replaced the ``requests`` library here).
    """
    from airflow import settings
    from airflow.sdk import plugins_manager

    assert plugins_manager._get_plugins.cache_info().currsize == 1, "the plugin loader did not run"
    assert sys.modules["requests"] is requests, sys.modules["requests"]
    package = (Path(settings.PLUGINS_FOLDER) / "calltouch_metrika").resolve()
    bare = {
        name: module.__file__
        for name, module in list(sys.modules.items())
        if name.split(".")[0] != "calltouch_metrika"
        and getattr(module, "__file__", None)
        and Path(module.__file__).resolve().is_relative_to(package)
    }
    assert bare == {}, f"modules of plugins/calltouch_metrika loaded under bare names: {bare}"


def plans_imports(sandbox: Any) -> list[dict[str, Any]]:
    return sandbox.state()["plans_imports"]


def test_dag_has_one_group_per_pipeline_with_a_plan_file(
    sandbox: Any, plans_env: Path, airflow_db: Path
) -> None:
    before = sandbox.state()["requests"]["total"]
    dag = load_dag()
    assert sorted(dag.task_ids) == [
        "site_a.import_plans",
        "site_a.wait_for_import",
        "site_b.import_plans",
        "site_b.wait_for_import",
    ]
    assert dag.get_task("site_a.wait_for_import").upstream_task_ids == {"site_a.import_plans"}
    assert dag.get_task("site_b.import_plans").site_id == 10002
    assert set(dag.params) == {"file", "dry_run", "force"}
    assert dag.params.get_param("file").schema["enum"] == ["", "a.csv", "b.csv"]
    assert dag.max_active_runs == 1
    assert not dag.catchup
    assert sandbox.state()["requests"]["total"] == before  # parsing makes no API call


def test_parsing_imports_no_pandas(plans_env: Path) -> None:
    code = textwrap.dedent(
        f"""
        import runpy, sys
        runpy.run_path({str(DAG_FILE)!r})
        heavy = sorted(m for m in ("pandas", "pyarrow") if m in sys.modules)
        print(heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_dag_test_imports_awaits_then_skips_unchanged_files(
    sandbox: Any, plans_env: Path, airflow_db: Path
) -> None:
    sandbox.reset(plans_in_progress_seconds=0.5)
    dag = load_dag()

    run(dag)
    imports = plans_imports(sandbox)
    assert sorted((p["site_id"], len(p["items"])) for p in imports) == [(10001, 30), (10001, 100), (10002, 1)]
    assert all(p["status"] == "success" for p in imports)
    ledger = plans_env.parent / "data" / "calltouch" / "plans_ledger"
    entries = [json.loads(p.read_text()) for p in ledger.rglob("*.json")]
    assert sorted(e["state"] for e in entries) == ["succeeded"] * 3

    run(dag)  # the daily run again: nothing changed -> nothing sent
    assert len(plans_imports(sandbox)) == 3

    write_plan(plans_env / "b.csv", ["2026-12-01,2026-12-31,,,,,подарки,Цели,Подписка на рассылку,175"])
    run(dag, dry_run=True)  # changed, but a dry run sends nothing
    assert len(plans_imports(sandbox)) == 3

    run(dag, file="a.csv", force=True)  # manual: only a.csv, forced
    imports = plans_imports(sandbox)
    assert sorted((p["site_id"], len(p["items"])) for p in imports[3:]) == [(10001, 30), (10001, 100)]

    run(dag)  # b.csv changed -> only its batch is sent
    imports = plans_imports(sandbox)
    assert [(p["site_id"], p["items"][0]["metric"]["value"]) for p in imports[5:]] == [(10002, 175)]


def test_dag_test_fails_on_an_import_error(sandbox: Any, plans_env: Path, airflow_db: Path) -> None:
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    sandbox.reset(plans_in_progress_seconds=0)
    sandbox.faults(plans_status_error=True)
    dag = load_dag()
    dr = dag.test(run_conf={"file": "b.csv", "dry_run": False, "force": False})
    assert dr.state == DagRunState.FAILED
    assert_plugin_loader_left_our_package_alone()
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in dr.get_task_instances(session=session)}
    assert states["site_b.wait_for_import"] == "failed"
    assert states["site_a.import_plans"] == "skipped"


def test_dag_without_plan_files_has_only_a_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> None:
    config = tmp_path / "pipelines.yaml"
    config.write_text(
        "pipelines:\n  - {name: only_calls, site_id: 10001, counter_id: 20001, start_date: 2026-11-01}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(config))
    dag = load_dag()
    assert dag.task_ids == ["no_plan_files"]
    assert dag.params.get_param("file").schema["enum"] == [""]
