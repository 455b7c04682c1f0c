"""DAG integrity: every DAG file imports cleanly, fast, without a hook, pandas or pyarrow, and follows the house rules.

Parsing happens in subprocesses where it matters (import time, ``sys.modules``), so this test process's
own imports cannot hide a heavy import in a DAG file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
CALLS_DAG_FILE = DAGS / "calltouch_calls_to_metrika.py"

pytestmark = pytest.mark.airflow


def _bag(dag_folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    # never include_examples (TypeError in 3.3); examples are off via AIRFLOW__CORE__LOAD_EXAMPLES
    return DagBag(dag_folder=str(dag_folder))


def test_every_dag_file_imports_without_errors() -> None:
    bag = _bag(DAGS)
    assert not bag.import_errors, "\n".join(f"{k}:\n{v}" for k, v in bag.import_errors.items())
    assert bag.dags, "no DAG found in dags/"


def test_every_dag_has_owner_tags_retries_and_explicit_schedule() -> None:
    bag = _bag(DAGS)
    for dag_id, dag in bag.dags.items():
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.doc_md, f"{dag_id}: no doc_md"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}: default owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id}: no retries"


def test_calls_dags_follow_the_pipelines() -> None:
    from calltouch_metrika.config import load_config
    from calltouch_metrika.timetables import LocalDayTimetable

    bag = _bag(CALLS_DAG_FILE)
    pipelines = load_config().pipelines
    assert sorted(bag.dags) == sorted(p.dag_id for p in pipelines)
    for p in pipelines:
        dag = bag.dags[p.dag_id]
        assert dag.timetable == LocalDayTimetable(at=p.schedule_at, timezone=p.timezone)
        assert p.schedule == "0 5 * * *" and dag.timetable.at == "05:00"  # the schedule keeps its meaning
        assert dag.catchup is True
        assert dag.max_active_runs == p.max_active_runs
        assert [t.task_id for t in dag.topological_sort()] == ["extract", "upload", "wait", "report"]
        assert set(dag.params) >= {"dry_run", "force_reupload"}
        assert dag.params["dry_run"] is False and dag.params["force_reupload"] is False
        assert dag.tasks[0].owner == p.owner and dag.tasks[0].retries == p.retries
        assert dag.get_task("wait").deferrable is True
        assert set(dag.tags) == set(p.dag_tags)


_PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys, time
    import airflow.sdk  # Airflow itself is loaded by every parser anyway; time only the file
    path = sys.argv[1]
    spec = importlib.util.spec_from_file_location("probe_dag", path)
    module = importlib.util.module_from_spec(spec)
    t0 = time.perf_counter()
    spec.loader.exec_module(module)
    elapsed = time.perf_counter() - t0
    # no hook, transform (they pull in HTTP clients, pandas, pyarrow), pandas, pyarrow, numpy, phonenumbers
    heavy = sorted(
        m
        for m in sys.modules
        if m in ("pandas", "pyarrow", "numpy", "phonenumbers")
        or m.startswith(("calltouch_metrika.hooks", "calltouch_metrika.transforms"))
    )
    print(json.dumps({"elapsed": elapsed, "heavy": heavy}))
    """
)


def _probe(path: Path, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_and_imports_no_hook_nor_pandas(path: Path) -> None:
    result = _probe(path)
    assert result["heavy"] == [], f"{path.name} imports {result['heavy']} at parse time"
    assert result["elapsed"] < 1.0, f"{path.name} took {result['elapsed']:.2f}s to parse"


def test_invalid_pipeline_hides_only_itself_and_is_the_config_errors_files_import_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(
        "pipelines:\n  - {name: broken, site_id: 10001, counter_id: 20001, start_date: 2026-11-01, "
        "price: {mode: fixd}}\n"
        "  - {name: healthy, site_id: 10002, counter_id: 20002, start_date: 2026-11-20, "
        "requests_export: {enabled: true}}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(cfg))
    bag = _bag(DAGS)
    assert sorted(bag.dags) == [
        "calltouch_calls_to_metrika__healthy",
        "calltouch_plans_import",
        "calltouch_requests_export__healthy",
        "example_requests_consumer",
    ]
    assert [Path(f).name for f in bag.import_errors] == ["calltouch_config_errors.py"]
    (message,) = bag.import_errors.values()
    assert (
        "1 error(s) in pipelines.yaml; pipeline(s) not loaded: broken; pipeline(s) loaded: healthy" in message
    )
    assert "pipelines.yaml: pipeline 'broken': key 'price.mode'" in message


def test_a_file_level_error_is_one_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text("pipelines: [\n", encoding="utf-8")
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(cfg))
    bag = _bag(DAGS)
    assert sorted(bag.dags) == ["calltouch_plans_import"]  # with no plan file: its no-op task
    (message,) = bag.import_errors.values()
    assert "pipelines.yaml: not valid YAML" in message


@pytest.mark.parametrize(
    ("bad_lines", "key"),
    [
        (f"    dag_tags: ['{'t' * 101}']\n", "dag_tags"),
        ("    start_date: 0001-01-01\n", "start_date"),
        ("    price: {mode: fixed, value: true}\n", "price.value"),
        ("    storage_root: 'nosuchproto://x'\n", "storage_root"),
    ],
)
def test_a_pipeline_airflow_would_refuse_hides_only_itself_in_every_dag_file(
    bad_lines: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Findings 1: the calls, requests, plans and consumer DAGs of the healthy pipeline all load."""
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "p.csv").write_text("site_id,metric,date_from,date_to,value\n", encoding="utf-8")
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(
        "pipelines:\n"
        "  - name: good\n    site_id: 10001\n    counter_id: 20001\n    start_date: 2026-11-18\n"
        "    requests_export: {enabled: true}\n    plans_file: p.csv\n"
        "  - name: bad\n    site_id: 10002\n    counter_id: 20002\n"
        "    requests_export: {enabled: true}\n    plans_file: p.csv\n"
        + ("" if key == "start_date" else "    start_date: 2026-11-18\n")
        + bad_lines,
        encoding="utf-8",
    )
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(cfg))
    monkeypatch.setenv("CALLTOUCH_METRIKA_PLANS_DIR", str(plans))
    bag = _bag(DAGS)
    assert sorted(bag.dags) == [
        "calltouch_calls_to_metrika__good",
        "calltouch_plans_import",
        "calltouch_requests_export__good",
        "example_requests_consumer",
    ]
    assert [t.task_id for t in bag.dags["calltouch_plans_import"].tasks if t.task_id.startswith("bad")] == []
    assert [Path(f).name for f in bag.import_errors] == ["calltouch_config_errors.py"]
    (message,) = bag.import_errors.values()
    assert "pipeline(s) not loaded: bad; pipeline(s) loaded: good" in message
    assert f"pipelines.yaml: pipeline 'bad': key '{key}'" in message
