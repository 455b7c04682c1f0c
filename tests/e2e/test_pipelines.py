"""The pipelines run by a real scheduler, triggerer and LocalExecutor workers on PostgreSQL.

``dag.test()`` runs triggers in-process and hides whole classes of faults (a trigger the triggerer
cannot import, a timetable that picks the wrong day, a connection only a test has). Here the DAGs run
the way users run them: ``airflow backfill create`` is written to the DB and the scheduler does the
rest; status sensors defer to the separate ``airflow triggerer`` process.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from .conftest import (
    CALLS_DAG,
    E2E,
    PIPELINE,
    PLANS_DAG,
    REQUESTS_DAG,
    SECRETS,
    SITE_ID,
    backfill_days,
)

MSK = ZoneInfo("Europe/Moscow")


def _backfill(e2e: E2E, days: list[date], *extra: str) -> None:
    """``airflow backfill create --from-date <first day> --to-date <last day>``: exactly those local days."""
    e2e.airflow(
        "backfill",
        "create",
        "--dag-id",
        CALLS_DAG,
        "--from-date",
        days[0].isoformat(),
        "--to-date",
        days[-1].isoformat(),
        *extra,
    )


def _backfills(e2e: E2E) -> list[tuple[int, datetime | None]]:
    conn = e2e.stack.postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, completed_at FROM backfill WHERE dag_id = %s ORDER BY id", (CALLS_DAG,))
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _wait_backfill_completed(e2e: E2E, *, timeout: float = 480) -> dict[str, dict[str, Any]]:
    """Wait until every backfill of the calls DAG is marked complete and its runs succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        runs = e2e.runs(CALLS_DAG)
        failed = [k for k, r in runs.items() if r["state"] == "failed"]
        if failed:
            pytest.fail(f"{CALLS_DAG}: run(s) failed: {e2e.describe_failures(CALLS_DAG, failed)}")
        open_backfills = [b for b, completed in _backfills(e2e) if completed is None]
        if not open_backfills and runs and all(r["state"] == "success" for r in runs.values()):
            return runs
        if time.monotonic() > deadline:
            states = {k: r["state"] for k, r in runs.items()}
            pytest.fail(f"backfill(s) {open_backfills} not complete after {timeout:.0f}s: {states}")
        time.sleep(3)


def _run_day(run: dict[str, Any]) -> date:
    """The local (Moscow) day a calls run covers: the start of its data interval."""
    return datetime.fromisoformat(run["data_interval_start"]).astimezone(MSK).date()


def _wait_sensors_deferred(e2e: E2E, earlier_runs: set[str], count: int, *, timeout: float = 420) -> None:
    """Wait until ``count`` new runs exist and each one's ``wait`` sensor is ``deferred``."""
    deadline = time.monotonic() + timeout
    states: dict[str, str | None] = {}
    while True:
        runs = {k: r for k, r in e2e.runs(CALLS_DAG).items() if k not in earlier_runs}
        failed = [k for k, r in runs.items() if r["state"] == "failed"]
        if failed:
            pytest.fail(f"{CALLS_DAG}: run(s) failed: {e2e.describe_failures(CALLS_DAG, failed)}")
        states = {k: e2e.task_instances(CALLS_DAG, k).get("wait", {}).get("state") for k in runs}
        if len(states) == count and set(states.values()) == {"deferred"}:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the status sensors did not all defer within {timeout:.0f}s: {states}")
        time.sleep(3)


@pytest.fixture(scope="module")
def calls_backfill(e2e: E2E) -> dict[str, Any]:
    """Backfill three recent days of the ``demo`` calls pipeline and wait for the three runs.

    Metrika's statuses are held until all three status sensors are deferred, so each sensor's wait is
    deterministically handed to the triggerer (and its trigger fires long after the deferral).
    """
    days = backfill_days(3, end_days_ago=2)
    earlier_runs = set(e2e.runs(CALLS_DAG))
    earlier_uploads = {u["id"] for u in e2e.uploads()}
    e2e.hold_metrika_statuses()
    try:
        _backfill(e2e, days)
        _wait_sensors_deferred(e2e, earlier_runs, 3)
        # Let the scheduler drain the executor's events of the deferring attempts before any trigger
        # can fire (see SANDBOX_ARGS in conftest.py: apache/airflow#71580).
        time.sleep(5)
    finally:
        e2e.release_metrika_statuses()
    _wait_backfill_completed(e2e)
    runs = {k: r for k, r in e2e.runs(CALLS_DAG).items() if k not in earlier_runs}
    return {"days": days, "runs": runs, "earlier_uploads": earlier_uploads}


def test_backfill_runs_succeed_for_the_three_days(e2e: E2E, calls_backfill: dict[str, Any]) -> None:
    runs = calls_backfill["runs"]
    assert len(runs) == 3, sorted(runs)
    assert {r["run_type"] for r in runs.values()} == {"backfill"}
    assert {r["state"] for r in runs.values()} == {"success"}
    assert sorted(_run_day(r) for r in runs.values()) == calls_backfill["days"]
    for run_id in runs:
        states = {t: ti["state"] for t, ti in e2e.task_instances(CALLS_DAG, run_id).items()}
        assert states == {
            "extract": "success",
            "upload": "success",
            "wait": "success",
            "report": "success",
        }, run_id


def test_sandbox_holds_exactly_three_uploads_with_the_days_calls(
    e2e: E2E, calls_backfill: dict[str, Any]
) -> None:
    uploads = {u["id"]: u for u in e2e.uploads() if u["id"] not in calls_backfill["earlier_uploads"]}
    assert len(uploads) == 3, [u["comment"] for u in uploads.values()]
    seen: set[int] = set()
    for run_id, run in calls_backfill["runs"].items():
        day = _run_day(run)
        extract = e2e.xcom(CALLS_DAG, run_id, "extract")
        upload = e2e.xcom(CALLS_DAG, run_id, "upload")
        final = e2e.xcom(CALLS_DAG, run_id, "wait")

        # The Calltouch side, asked directly: the calls of that local day.
        r = requests.get(
            f"{e2e.stack.sandbox_url}/calls-service/RestAPI/{SITE_ID}/calls-diary/calls",
            params={
                "clientApiId": SECRETS[0],
                "dateFrom": day.strftime("%d/%m/%Y"),
                "dateTo": day.strftime("%d/%m/%Y"),
                "withCallTags": "true",
            },
            timeout=30,
        )
        r.raise_for_status()
        calls = r.json()
        assert calls, f"the sandbox generated no call for {day}"
        assert extract["rows"] == len(calls) == upload["extracted"], run_id
        assert (extract["date_from"], extract["date_to"]) == (
            day.isoformat(),
            (day + timedelta(days=1)).isoformat(),
        )

        assert upload["dry_run"] is False and upload["reused"] is False
        assert upload["uploaded"] + upload["rejected"] == upload["extracted"]
        assert upload["uploaded"] > 0
        stored = uploads[upload["upload_id"]]
        seen.add(stored["id"])
        assert day.isoformat() in stored["comment"] and PIPELINE in stored["comment"]
        assert stored["new_goal_name"] == "Звонок из Calltouch"
        assert stored["status"] == final["status"] == "PROCESSED"
        assert len(stored["rows"]) == stored["line_quantity"] == upload["uploaded"]
        assert {"ClientId", "DateTime"} <= set(stored["columns"])

        # Every uploaded call happened on that Moscow day, and is one of the day's calls.
        start = datetime.combine(day, clock(), MSK).timestamp()
        end = datetime.combine(day + timedelta(days=1), clock(), MSK).timestamp()
        client_ids = {c.get("yaClientId") for c in calls}
        for row in stored["rows"]:
            assert start <= int(row["DateTime"]) < end, row
            assert row["ClientId"] in client_ids, row
    assert seen == set(uploads)


def test_status_sensors_deferred_and_completed_by_the_triggerer(
    e2e: E2E, calls_backfill: dict[str, Any]
) -> None:
    events = e2e.audit_events(CALLS_DAG)
    for run_id in calls_backfill["runs"]:
        wait_events = [ev for ev, task, run in events if task == "wait" and run == run_id]
        # The audit log records every task state change: the sensor ran, deferred, ran again, succeeded.
        assert wait_events[-1] == "success" and "deferred" in wait_events[:-1], (run_id, wait_events)
        trigger_logs = [
            f
            for f in e2e.task_log_files(CALLS_DAG, run_id)
            if "task_id=wait" in str(f) and ".trigger." in f.name
        ]
        assert trigger_logs, f"{run_id}: no triggerer log for the wait task"
        text = "\n".join(f.read_text(errors="replace") for f in trigger_logs)
        assert "UploadStatusTrigger" in text or "calltouch_metrika.triggers.metrika" in text, text[:2000]
        assert "Trigger fired event" in text and "trigger completed" in text, text[-2000:]


def test_task_logs_hold_the_summaries_and_no_token(e2e: E2E, calls_backfill: dict[str, Any]) -> None:
    for run_id in calls_backfill["runs"]:
        logs: dict[str, str] = {}
        for f in e2e.task_log_files(CALLS_DAG, run_id):
            task = next(p.split("=", 1)[1] for p in f.parts if p.startswith("task_id="))
            logs[task] = logs.get(task, "") + f.read_text(errors="replace")
        assert "Extract summary" in logs["extract"], run_id
        assert "Upload summary for demo" in logs["upload"], run_id
        assert re.search(r"uploaded \d+ as \d+ \(", logs["upload"]), run_id  # this run's upload, by id
        assert "finished: status PROCESSED" in logs["wait"], run_id
    _assert_no_secret_in(e2e.stack.home)


def _assert_no_secret_in(home: Path) -> None:
    """No file under AIRFLOW_HOME's logs (task, triggerer, scheduler, ...) holds a token."""
    files = [*home.glob("*.log"), *(home / "logs").rglob("*.log")]
    assert files
    for f in files:
        text = f.read_text(errors="replace")
        for secret in SECRETS:
            assert secret not in text, f"{secret[:8]}... appears in {f}"


def test_rerun_of_completed_days_uploads_nothing_new(e2e: E2E, calls_backfill: dict[str, Any]) -> None:
    days = calls_backfill["days"]
    before = {u["id"] for u in e2e.uploads()}
    assert len(before - calls_backfill["earlier_uploads"]) == 3
    known = {b[0] for b in _backfills(e2e)}
    runs_before = set(e2e.runs(CALLS_DAG))
    _backfill(e2e, days, "--reprocess-behavior", "completed")
    new = [b for b in _backfills(e2e) if b[0] not in known]
    assert len(new) == 1, new

    # The same three runs are cleared and run again; wait until the new backfill is complete.
    runs = _wait_backfill_completed(e2e)
    assert set(runs) == runs_before, "the re-run created new runs instead of re-running the days"
    for run_id in calls_backfill["runs"]:
        ti = e2e.task_instances(CALLS_DAG, run_id)["upload"]
        assert ti["try_number"] >= 2, f"{run_id}: the upload task was not run again"
        upload = e2e.xcom(CALLS_DAG, run_id, "upload")
        assert upload["reused"] is True, upload
        assert upload["upload_id"] in before
    assert {u["id"] for u in e2e.uploads()} == before


def _trigger(e2e: E2E, dag_id: str, run_id: str) -> None:
    """``airflow dags trigger`` without a logical date, as the UI's Trigger button does.

    (A manual run with a logical date before the DAG's start_date -- tomorrow here -- gets no task
    instances; backfills are exempt.)
    """
    e2e.airflow("dags", "trigger", dag_id, "--run-id", run_id)


def test_plans_and_requests_dags_run_once_and_succeed(e2e: E2E) -> None:
    uploads_before = len(e2e.uploads())
    _trigger(e2e, PLANS_DAG, "e2e_plans")
    _trigger(e2e, REQUESTS_DAG, "e2e_requests")
    e2e.wait_runs(PLANS_DAG, {"e2e_plans"}, timeout=420)
    e2e.wait_runs(REQUESTS_DAG, {"e2e_requests"}, timeout=420)

    plan_tis = e2e.task_instances(PLANS_DAG, "e2e_plans")
    assert set(plan_tis) == {f"{PIPELINE}.import_plans", f"{PIPELINE}.wait_for_import"}, plan_tis
    assert {ti["state"] for ti in plan_tis.values()} == {"success"}, plan_tis
    request_tis = e2e.task_instances(REQUESTS_DAG, "e2e_requests")
    assert request_tis and {ti["state"] for ti in request_tis.values()} == {"success"}, request_tis

    imports = [i for i in e2e.sandbox.state()["plans_imports"] if i["site_id"] == SITE_ID]
    assert imports, "the plans DAG succeeded without importing anything"
    assert {i["status"] for i in imports} == {"success"}
    plan_tis = e2e.task_instances(PLANS_DAG, "e2e_plans")
    assert plan_tis and {ti["state"] for ti in plan_tis.values()} == {"success"}, plan_tis

    # A manual run without a logical date covers the site's previous local day.
    yesterday = (datetime.now(MSK) - timedelta(days=1)).date()
    written = (
        e2e.data_dir / "calltouch" / "requests" / f"site={SITE_ID}" / f"date={yesterday}" / "requests.parquet"
    )
    assert written.is_file(), sorted(str(p) for p in e2e.data_dir.rglob("*.parquet"))
    assert len(e2e.uploads()) == uploads_before, "plans/requests DAGs must not upload calls"
    _assert_no_secret_in(e2e.stack.home)
