"""CeleryExecutor end to end: two ``airflow celery worker`` processes share one Calltouch rate limit.

The stack ``EXECUTOR=celery make up`` starts (:mod:`tools.local_airflow`): PostgreSQL (metadata DB and
Celery's result backend), a private Redis (Debian's ``redis-server``: the broker, and the shared rate
limit of every task process), the api-server, scheduler, dag-processor, triggerer and two Celery
workers, plus the sandbox. Three pipelines (three sites, three counters) are backfilled over two days
at once; each day is three pages (2,500 calls), so up to four extracts in the ``calltouch_api`` pool
page concurrently from both workers, and only the shared limiter keeps the total under Calltouch's
5 requests per second per IP.

Asserted: every run succeeds; each counter holds exactly one upload per day and each call once; the
status sensors deferred to the triggerer; the sandbox saw at most 5 Calltouch requests in any second
and no 429; both workers ran tasks.

Skips, each with its reason: no PostgreSQL (see ``conftest.require_postgres``), no ``redis-server``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import max_in_second
from tools.local_airflow.postgres import PostgresCluster
from tools.local_airflow.redis import RedisServer, find_redis_server
from tools.local_airflow.stack import POOL_NAME, LocalAirflow, free_port

from .conftest import E2E, SandboxState, backfill_days, keep_logs, require_postgres

MSK = ZoneInfo("Europe/Moscow")
SITES = {
    "alpha": (10001, 20001),
    "beta": (10002, 20002),
    "gamma": (10003, 20003),
    "delta": (10004, 20004),
}
#: gamma and delta are extracted together by the account DAG (one task per day for both sites); their
#: own extract tasks take its files; alpha and beta extract themselves, concurrently with it.
ACCOUNT = "agency"
ACCOUNT_MEMBERS = ("gamma", "delta")
ACCOUNT_DAG = f"calltouch_account_extract__{ACCOUNT}"
CALLS_PER_DAY = 2500  # three pages of 1,000
DAYS = 2


def dag_id(pipeline: str) -> str:
    return f"calltouch_calls_to_metrika__{pipeline}"


def write_pipelines(path: Path, data_dir: Path) -> None:
    tomorrow = date.today() + timedelta(days=1)
    entries = "".join(
        f"""\
  - name: {name}
    site_id: {site}
    counter_id: {counter}
    timezone: Europe/Moscow
    schedule: "0 5 * * *"
    start_date: {tomorrow.isoformat()}
    storage_root: {data_dir}
    pool: {POOL_NAME}
    retries: 0
    status_poll_seconds: 2
    status_timeout_hours: 1
"""
        + (f"    account: {ACCOUNT}\n    account_wait_minutes: 10\n" if name in ACCOUNT_MEMBERS else "")
        for name, (site, counter) in SITES.items()
    )
    path.write_text("pipelines:\n" + entries, encoding="utf-8")


@pytest.fixture(scope="module")
def celery() -> Iterator[E2E]:
    """The Celery stack, started once for this module; everything stopped and removed at the end."""
    bin_dir = require_postgres()
    redis_bin = find_redis_server()
    if redis_bin is None:
        pytest.skip(
            "redis-server not found (as root, `bash tools/system-deps.sh` installs Debian's redis-server)"
        )
    pg_root = Path(tempfile.mkdtemp(prefix="ctm-celery-pg-"))
    home = Path(tempfile.mkdtemp(prefix="ctm-celery-airflow-"))
    data_dir = home / "data"
    data_dir.mkdir()
    config = home / "pipelines.yaml"
    write_pipelines(config, data_dir)
    sites = [s for s, _ in SITES.values()]
    counters = [c for _, c in SITES.values()]
    sandbox_config = (
        f'{{"plans_in_progress_seconds": 0, "calltouch_tokens": {{"sandbox-ct-token": {sites}}}, '
        f'"metrika_tokens": {{"sandbox-ym-token": {counters}}}}}'
    )
    stack = LocalAirflow(
        home=home,
        api_port=free_port(),
        sandbox_port=free_port(),
        sandbox_args=[
            "--calls-per-day",
            str(CALLS_PER_DAY),
            "--status-step-seconds",
            "2",
            "--config-json",
            sandbox_config,
        ],
        postgres=PostgresCluster(root=pg_root / "cluster", port=free_port(), bin_dir=bin_dir),
        executor="celery",
        redis=RedisServer(root=home / "redis", port=free_port(), binary=redis_bin),
        celery_workers=2,
        worker_concurrency=4,
        parallelism=8,
        extra_env={"CALLTOUCH_METRIKA_CONFIG": str(config), "CALLTOUCH_METRIKA_DATA": str(data_dir)},
        # not the test session's AIRFLOW_CONN_* (they point at its own sandbox): the stack's sandbox
        inherit_connections=False,
    )
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(pg_root, pw.pw_uid, pw.pw_gid)
    try:
        stack.start(timeout=300)
        harness = E2E(stack, SandboxState(stack.sandbox_url), data_dir)
        dags = [dag_id(p) for p in SITES] + [ACCOUNT_DAG]
        stack.wait_for_dags(dags, timeout=240)
        for d in dags:
            stack.unpause(d, harness.token)
        yield harness
    finally:
        stack.stop()
        shutil.rmtree(pg_root, ignore_errors=True)
        keep_logs(home, "e2e-celery-logs")
        shutil.rmtree(home, ignore_errors=True)


def _all_runs(e2e: E2E) -> dict[str, dict[str, dict[str, Any]]]:
    return {p: e2e.runs(dag_id(p)) for p in SITES}


@pytest.fixture(scope="module")
def backfilled(celery: E2E) -> dict[str, Any]:
    """Backfill two days of the three pipelines at once; wait until the six runs have finished.

    Metrika's statuses are held until the six status sensors have deferred (so each wait is handed to
    the triggerer, and no trigger fires within seconds of its deferral: apache/airflow#71580).
    """
    e2e = celery
    days = backfill_days(DAYS, end_days_ago=2)
    e2e.sandbox.configure(status_step_seconds=3600)
    started = time.monotonic()
    try:
        # the REST API's POST /backfills (what `airflow backfill create` writes); the account first,
        # as its scheduled runs are created with the pipelines' (same timetable)
        for d in [ACCOUNT_DAG] + [dag_id(p) for p in SITES]:
            e2e.api(
                "POST",
                "/backfills",
                json={
                    "dag_id": d,
                    "from_date": f"{days[0].isoformat()}T00:00:00+03:00",  # local days (LocalDayTimetable, MSK)
                    "to_date": f"{days[-1].isoformat()}T00:00:00+03:00",
                },
            )
        deadline = time.monotonic() + 180
        while True:
            waits = {
                (p, run_id): e2e.task_instances(dag_id(p), run_id).get("wait", {}).get("state")
                for p, runs in _all_runs(e2e).items()
                for run_id, run in runs.items()
                if run["state"] != "failed"
            }
            failed = {
                p: [k for k, r in runs.items() if r["state"] == "failed"]
                for p, runs in _all_runs(e2e).items()
            }
            if any(failed.values()):
                pytest.fail(
                    "; ".join(e2e.describe_failures(dag_id(p), ids) for p, ids in failed.items() if ids)
                )
            if len(waits) == len(SITES) * DAYS and set(waits.values()) == {"deferred"}:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the status sensors did not all defer within 180 s: {waits}\n{e2e.diagnostics()}"
                )
            time.sleep(2)
        time.sleep(5)  # let the scheduler drain the deferring attempts' events first (#71580)
    finally:
        e2e.sandbox.configure(status_step_seconds=0.1)
    runs = {p: e2e.wait_runs(dag_id(p), count=DAYS, timeout=180) for p in SITES}
    account = e2e.wait_runs(ACCOUNT_DAG, count=DAYS, timeout=180)
    return {"days": days, "runs": runs, "account_runs": account, "seconds": time.monotonic() - started}


def test_every_run_succeeds(celery: E2E, backfilled: dict[str, Any]) -> None:
    for p, runs in backfilled["runs"].items():
        assert len(runs) == DAYS, (p, sorted(runs))
        assert {r["run_type"] for r in runs.values()} == {"backfill"}
        assert {r["state"] for r in runs.values()} == {"success"}
        days = sorted(
            datetime.fromisoformat(r["data_interval_start"]).astimezone(MSK).date() for r in runs.values()
        )
        assert days == backfilled["days"]


def test_each_call_uploaded_exactly_once_per_counter(celery: E2E, backfilled: dict[str, Any]) -> None:
    uploads = celery.sandbox.state()["uploads"]
    for p, (site, counter) in SITES.items():
        mine = [u for u in uploads if u["counter_id"] == counter]
        assert len(mine) == DAYS, (p, [u["comment"] for u in mine])  # one upload per day, no re-send
        extracted = uploaded = 0
        rows: list[tuple[str, ...]] = []
        for run_id in backfilled["runs"][p]:
            extract = celery.xcom(dag_id(p), run_id, "extract")
            upload = celery.xcom(dag_id(p), run_id, "upload")
            assert extract["site_id"] == site and extract["rows"] == CALLS_PER_DAY
            assert upload["uploaded"] + upload["rejected"] == upload["extracted"] == CALLS_PER_DAY
            extracted += upload["extracted"]
            uploaded += upload["uploaded"]
        for u in mine:
            rows += [tuple(str(r[c]) for c in u["columns"]) for r in u["rows"]]
        assert extracted == DAYS * CALLS_PER_DAY
        assert len(rows) == uploaded  # every uploaded call is in Metrika ...
        assert len(set(rows)) == len(rows)  # ... exactly once


def test_status_sensors_deferred_to_the_triggerer(celery: E2E, backfilled: dict[str, Any]) -> None:
    for p, runs in backfilled["runs"].items():
        events = celery.audit_events(dag_id(p))
        for run_id in runs:
            wait_events = [ev for ev, task, run in events if task == "wait" and run == run_id]
            assert wait_events[-1] == "success" and "deferred" in wait_events[:-1], (p, run_id, wait_events)


def test_calltouch_saw_at_most_five_requests_a_second_and_no_429(
    celery: E2E, backfilled: dict[str, Any]
) -> None:
    seen = celery.sandbox.state()["requests"]
    times = seen["calltouch_times"]
    # 4 sites x 2 days x 3 pages, each fetched once (no 429, so no retry): the account members' own
    # extract tasks asked Calltouch nothing
    assert len(times) == len(SITES) * DAYS * 3, len(times)
    assert seen["by_status"].get("429", 0) == 0, seen["by_status"]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(sorted(times))]
    assert max_in_second(times) <= 5, gaps


def test_both_celery_workers_ran_tasks_through_the_shared_limiter(
    celery: E2E, backfilled: dict[str, Any]
) -> None:
    for n in (1, 2):
        log = (celery.stack.home / f"celery-worker{n}.log").read_text(errors="replace")
        assert "received" in log, f"celery worker {n} received no task"
    extract_logs = [f for p in SITES for f in celery.task_log_files(dag_id(p)) if "task_id=extract" in str(f)]
    assert extract_logs
    text = "".join(f.read_text(errors="replace") for f in extract_logs)
    assert "calltouch rate limit" in text and "shared through redis://127.0.0.1:" in text


def test_the_account_dag_read_its_sites_and_its_pipelines_took_its_files(
    celery: E2E, backfilled: dict[str, Any]
) -> None:
    runs = backfilled["account_runs"]
    assert {r["state"] for r in runs.values()} == {"success"}, runs
    for run_id in runs:
        out = celery.xcom(ACCOUNT_DAG, run_id, "extract")
        assert set(out["sites"]) == set(ACCOUNT_MEMBERS) and not out["failed"]
        assert all(s["rows"] == CALLS_PER_DAY for s in out["sites"].values())
    logs = "".join(
        f.read_text(errors="replace")
        for p in ACCOUNT_MEMBERS
        for f in celery.task_log_files(dag_id(p))
        if "task_id=extract" in str(f)
    )
    assert logs.count(f"from the extract of account '{ACCOUNT}'") >= len(ACCOUNT_MEMBERS) * DAYS, logs[-3000:]
    assert "fetching site" not in logs  # none fell back to fetching itself
