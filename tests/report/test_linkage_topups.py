"""The linkage report of a lookback top-up, against what the sandbox recorded, through ``dag.test()``.

A day is uploaded (part 1); then 30 calls appear on it in the sandbox (``volume_overrides``, as in
``tests/dags/test_never_twice.py``); the next day's run tops it up through its lookback (part 2). The
report for the earlier day must show the first upload and the top-up, each with the rows the sandbox
received and its final status; the next day's own row is a first upload with no top-up.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.helpers import COUNTER_ID, SITE_ID, recent_day, run_dag, task_states, xcom
from tests.helpers import write_config as _write_config

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "calltouch_calls_to_metrika__e2e"
_PART = re.compile(r"(\d{4}-\d{2}-\d{2}) part (\d+)$")


def _uploads_by_part(sandbox) -> dict[tuple[str, int], dict]:
    out = {}
    for up in sandbox.state()["uploads"]:
        m = _PART.search(up["comment"])
        out[(m.group(1), int(m.group(2)))] = up
    return out


def _rows(pipeline: dict, first: date, last: date) -> list[dict]:
    from calltouch_metrika.linkage.dataset import read_rows

    return read_rows(pipeline["storage_root"], pipeline="e2e", counter_id=COUNTER_ID, first=first, last=last)


def test_a_lookback_top_up_is_reported_on_its_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox, airflow_db
) -> None:
    from airflow.utils.state import DagRunState

    from calltouch_metrika.linkage.dataset import daily_rows

    pipeline = _write_config(tmp_path, monkeypatch, lookback_days=1)
    day = recent_day() - timedelta(days=1)
    nxt = day + timedelta(days=1)
    first_run = run_dag(DAG_ID, day)
    assert first_run.state == DagRunState.SUCCESS, task_states(first_run)
    sandbox.configure(volume_overrides={f"{SITE_ID}:{day.isoformat()}": 180})  # 30 late calls
    dr = run_dag(DAG_ID, nxt)
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    assert task_states(dr)["report"] == "success"

    ups = _uploads_by_part(sandbox)
    first, top_up, own = ups[(day.isoformat(), 1)], ups[(day.isoformat(), 2)], ups[(nxt.isoformat(), 1)]
    assert sorted(ups) == sorted(
        [
            ((day - timedelta(days=1)).isoformat(), 1),
            (day.isoformat(), 1),
            (day.isoformat(), 2),
            (nxt.isoformat(), 1),
        ]
    )
    # The second run reported both of its uploads: the earlier day's top-up and its own day's first.
    assert xcom(dr, "report")["rows"] == 2

    # The earlier day, merged: first upload + top-up, counts equal to the rows the sandbox received.
    (row,) = daily_rows(_rows(pipeline, day, day))
    assert row["upload_ids"] == sorted([first["id"], top_up["id"]]) and row["uploads"] == 2
    assert row["uploaded_first"] == len(first["rows"]) == first["source_quantity"]
    assert row["uploaded_topups"] == len(top_up["rows"]) == top_up["source_quantity"]
    assert row["uploaded"] == len(first["rows"]) + len(top_up["rows"])
    assert row["status"] == "PROCESSED" == first["status"] == top_up["status"]
    for q in ("source_quantity", "line_quantity", "linked_quantity"):
        assert row[q] == first[q] + top_up[q], q
    assert row["runs"] == [
        {"dag_id": DAG_ID, "run_id": dr.run_id},
        {"dag_id": DAG_ID, "run_id": first_run.run_id},
    ]
    # The top-up's own file: the top-up run's counts for that day (extracted 180 = uploaded + already
    # sent + rejected), as the upload task reconciled them.
    (top_row,) = [r for r in _rows(pipeline, day, day) if r["upload_id"] == top_up["id"]]
    (top_day,) = [d for d in xcom(dr, "upload")["days"] if d["day"] == day.isoformat()]
    assert top_row["upload_kind"] == "topup" and top_row["run_id"] == dr.run_id
    assert (top_row["extracted"], top_row["uploaded"], top_row["already_uploaded"], top_row["rejected"]) == (
        180,
        top_day["uploaded"],
        top_day["already_sent"],
        top_day["rejected"],
    )
    assert top_row["day"] == top_row["day_to"] == day
    assert top_row["status"] == "PROCESSED" and top_row["seconds_to_final"] is not None

    # The next day: its own first upload, no top-up.
    (own_row,) = daily_rows(_rows(pipeline, nxt, nxt))
    assert own_row["upload_ids"] == [own["id"]]
    assert (own_row["uploaded_first"], own_row["uploaded_topups"]) == (len(own["rows"]), 0)
    assert own_row["status"] == own["status"] == "PROCESSED"

    # A re-run of the next day only re-uses its upload: its file is kept, nothing new is reported.
    again = run_dag(DAG_ID, nxt)
    assert again.state == DagRunState.SUCCESS, task_states(again)
    report = xcom(again, "report")
    assert report["written"] == [] and report["rows"] == 1 and len(report["kept"]) == 1
    assert len(sandbox.state()["uploads"]) == 4


def test_a_failed_status_lookup_gives_status_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    """The report never fails on Metrika: a lookup that fails (here, no such connection) is "unknown"."""
    from calltouch_metrika.operators.report import LinkageReportOperator

    op = LinkageReportOperator(
        task_id="report",
        pipeline="e2e",
        counter_id=COUNTER_ID,
        storage_root="unused",
        metrika_conn_id="no_such_metrika_connection",
    )
    assert op._final_record(COUNTER_ID, 123, waited={"id": 7, "status": "PROCESSED"}) is None
    out = capsys.readouterr().out  # the task logger writes through structlog to stdout
    assert "Upload 123: looking up its status failed" in out and "status unknown" in out
    assert op._final_record(COUNTER_ID, 7, waited={"id": 7, "status": "PROCESSED"})["status"] == "PROCESSED"
