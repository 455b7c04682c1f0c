"""The linkage report dataset against what the sandbox recorded, for a multi-day run of the real DAG.

Three local days go through ``dag.test()`` (extract >> upload >> wait >> report); the report rows read
back from storage must equal, count for count, the uploads the sandbox received and the upload task's
reconciled counts. A fourth day has no calls (a ``no-upload`` row), and a re-run writes nothing new.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.sensors.calls_pipeline import COUNTER_ID, SITE_ID, recent_day, run_dag, task_states, xcom
from tests.sensors.calls_pipeline import write_config as _write_config

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "calltouch_calls_to_metrika__e2e"


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox, airflow_db) -> dict:
    return _write_config(tmp_path, monkeypatch)


def _report(pipeline: dict, first: date, last: date) -> list[dict]:
    from calltouch_metrika.linkage.dataset import daily_rows, read_rows

    rows = read_rows(pipeline["storage_root"], pipeline="e2e", counter_id=COUNTER_ID, first=first, last=last)
    return daily_rows(rows)


def test_report_rows_match_the_sandbox_uploads_day_by_day(pipeline: dict, sandbox) -> None:
    from airflow.utils.state import DagRunState

    last = recent_day()
    days = [last - timedelta(days=i) for i in (3, 2, 1, 0)]
    empty = days[0]
    sandbox.reset(volume_overrides={f"{SITE_ID}:{empty.isoformat()}": 0})
    runs = {}
    for day in days:
        dr = run_dag(DAG_ID, day)
        assert dr.state == DagRunState.SUCCESS, task_states(dr)
        states = task_states(dr)
        assert states["report"] == "success", states
        runs[day] = dr

    uploads = {re.search(r"\d{4}-\d{2}-\d{2}", u["comment"]).group(0): u for u in sandbox.state()["uploads"]}
    assert sorted(uploads) == [d.isoformat() for d in days[1:]]
    report = {r["day"]: r for r in _report(pipeline, days[0], days[-1])}
    assert sorted(report) == [d.isoformat() for d in days]

    for day in days:
        row, out = report[day.isoformat()], xcom(runs[day], "upload")
        assert row["pipeline"] == "e2e" and row["counter_id"] == COUNTER_ID and row["site_id"] == SITE_ID
        assert (row["extracted"], row["uploaded"], row["rejected"]) == (
            out["extracted"],
            out["uploaded"],
            out["rejected"],
        )
        assert row["rejected_by_reason"] == {k: v for k, v in out["rejects_by_reason"].items() if v}
        assert row["extracted"] == row["uploaded"] + row["rejected"]
        assert row["runs"] == [{"dag_id": DAG_ID, "run_id": runs[day].run_id}]
        if day == empty:
            assert row["extracted"] == 0 and row["uploads"] == 0 and row["status"] is None
            assert row["linked_quantity"] is None and row["linked_share"] is None
            continue
        up = uploads[day.isoformat()]
        assert row["upload_ids"] == [up["id"]] and row["uploads"] == 1
        assert row["status"] == up["status"] == "PROCESSED"
        for q in ("source_quantity", "line_quantity", "linked_quantity"):
            assert row[q] == up[q], q
        assert row["static_calls_quantity"] == up["static_calls_quantity"]
        assert row["dynamic_calls_quantity"] == up["dynamic_calls_quantity"]
        assert row["uploaded"] == row["uploaded_first"] == up["source_quantity"]
        assert row["uploaded_topups"] == 0
        assert 0 < row["linked_quantity"] <= row["line_quantity"]
        assert row["linked_share"] == pytest.approx(up["linked_quantity"] / up["line_quantity"])
        assert row["seconds_to_final"] is not None and row["seconds_to_final"] >= 0

    # The files: one per upload, one no-upload file for the empty day.
    root = Path(pipeline["storage_root"]) / "metrika" / "linkage" / f"counter={COUNTER_ID}"
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert names == sorted(
        [f"date={empty}/e2e.no-upload.parquet"]
        + [f"date={d}/e2e.upload-{uploads[d.isoformat()]['id']}.parquet" for d in days[1:]]
    )

    # A re-run of a day reuses the upload and keeps its report file as first written.
    day = days[-1]
    path = root / f"date={day}" / f"e2e.upload-{uploads[day.isoformat()]['id']}.parquet"
    before = path.read_bytes()
    again = run_dag(DAG_ID, day)
    assert again.state == DagRunState.SUCCESS
    assert xcom(again, "report") == {"written": [], "kept": [f"file://{path}"], "rows": 1}
    assert path.read_bytes() == before
    assert len(sandbox.state()["uploads"]) == len(days) - 1


def test_dry_run_reports_nothing_and_linkage_failure_is_reported(
    pipeline: dict, sandbox, monkeypatch
) -> None:
    """A dry run writes no row; a day Metrika cannot link fails the run, yet its row is written."""
    from airflow.utils.state import DagRunState

    from tests.sensors.calls_pipeline import write_config

    day = recent_day()
    dry = run_dag(DAG_ID, day, conf={"dry_run": True})
    assert dry.state == DagRunState.SUCCESS
    assert task_states(dry)["report"] == "skipped"
    assert _report(pipeline, day, day) == []

    # UserIds Metrika does not know (Calltouch's session ids): every row is valid, none links.
    failing = write_config(
        Path(pipeline["storage_root"]).parent,
        monkeypatch,
        identifier={"type": "UserId", "field": "sessionId"},
        on_linkage_failure="fail",
    )
    dr = run_dag(DAG_ID, day)
    states = task_states(dr)
    assert dr.state == DagRunState.FAILED and states["wait"] == "failed", states
    assert states["report"] == "success"
    (up,) = sandbox.state()["uploads"]
    (row,) = _report(failing, day, day)
    assert row["status"] == up["status"] == "LINKAGE_FAILURE"
    assert row["linked_quantity"] == 0 and row["linked_share"] == 0
    assert row["line_quantity"] == up["line_quantity"] and row["uploaded"] == up["source_quantity"]
