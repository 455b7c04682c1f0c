"""Issue 11 end to end: the day a user names is the day a run processes (real Airflow, the sandbox).

* ``dag.test(logical_date=<date>)`` is what ``airflow dags test DAG 2026-11-29`` runs: that day;
* a manual run whose day has not ended (today) fails before any API call and uploads nothing;
* a day uploaded before the timetable change (same comment) is recognised, never re-sent;
* a real ``airflow backfill create --from-date D-3 --to-date D-1`` creates exactly three runs, each
  with its local day as data interval.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest

from calltouch_metrika.timetables import LocalDayTimetable, day_interval
from tests.helpers import COUNTER_ID, SITE_ID, TZ, load_dag, recent_day, task_states, xcom
from tests.helpers import write_config as _write_config

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "calltouch_calls_to_metrika__e2e"


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: Any, airflow_db: Path) -> dict:
    return _write_config(tmp_path, monkeypatch, start_date=(recent_day() - timedelta(days=5)).isoformat())


def _plain_date(day: date) -> Any:
    """What the CLI makes of ``2026-11-29`` (its own parser; default_timezone UTC)."""
    from airflow._shared.timezones.timezone import parse

    return parse(day.isoformat())


def test_dags_test_with_a_date_processes_that_day(
    pipeline: dict, sandbox: Any, capfd: pytest.CaptureFixture
) -> None:
    from airflow.utils.state import DagRunState

    day = recent_day()
    dr = load_dag(DAG_ID).test(logical_date=_plain_date(day))
    logged = "".join(capfd.readouterr())
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    assert (dr.data_interval_start, dr.data_interval_end) == tuple(day_interval(day, TZ))
    extracted = xcom(dr, "extract")
    assert (extracted["date_from"], extracted["date_to"]) == (
        day.isoformat(),
        (day + timedelta(days=1)).isoformat(),
    )
    (upload,) = sandbox.state()["uploads"]
    assert upload["comment"] == f"calltouch-metrika e2e site {SITE_ID} {day.isoformat()} part 1"
    assert f"Upload summary for e2e, site {SITE_ID} -> counter {COUNTER_ID}, {day.isoformat()}" in logged


def test_a_day_that_has_not_ended_fails_without_uploading(
    pipeline: dict, sandbox: Any, capfd: pytest.CaptureFixture
) -> None:
    from airflow.utils.state import DagRunState

    today = pendulum.now(TZ).date()
    dr = load_dag(DAG_ID).test(logical_date=_plain_date(today))
    logged = "".join(capfd.readouterr())
    assert dr.state == DagRunState.FAILED
    assert task_states(dr)["extract"] == "failed"
    assert task_states(dr)["upload"] in ("upstream_failed", "None")
    assert f"day {today.isoformat()} has not ended yet in {TZ}: it ends at " in logged
    assert sandbox.state()["uploads"] == []


def test_a_day_uploaded_under_the_former_timetable_is_recognised(pipeline: dict, sandbox: Any) -> None:
    """Before issue 11 the run of day D had the cron interval [D 05:00, D+1 05:00) and uploaded with
    this comment; the new run of day D must find that upload and not send it again (issue 12: it is
    imported into the call ledger; with no stored CSV, the day's uploadable calls stand for it)."""
    from airflow.utils.state import DagRunState

    from calltouch_metrika.hooks.metrika import MetrikaHook

    day = recent_day()
    old_comment = (
        f"calltouch-metrika e2e site {SITE_ID} {day.isoformat()}"  # the pre-issue-11 format, verbatim
    )
    old = MetrikaHook().upload_calls(
        COUNTER_ID, "ClientId,DateTime\n1690000000123456789,1700000000\n", comment=old_comment
    )
    dr = load_dag(DAG_ID).test(logical_date=_plain_date(day))
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    uploads = sandbox.state()["uploads"]
    assert [u["id"] for u in uploads] == [old["id"]]  # nothing new sent
    out = xcom(dr, "upload")
    assert out["reused"] is True and out["upload_id"] == old["id"] and out["comment"] == old_comment
    # storage paths unchanged
    root = Path(pipeline["storage_root"])
    assert (
        xcom(dr, "extract")["path"]
        == f"file://{root}/calltouch/calls/site={SITE_ID}/date={day}/calls.parquet"
    )
    # nothing sent this run, so no CSV of this run; the old upload is in the call ledger (issue 12)
    assert out["csv_path"] is None and out["already_sent"] > 0


def test_real_backfill_create_makes_one_run_per_named_day(pipeline: dict, airflow_db: Path) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    today = pendulum.now(TZ).date()
    first, last = today - timedelta(days=3), today - timedelta(days=1)
    # The session's DB may hold runs of these days from other tests (`dag.test` of the same DAG id);
    # a backfill skips days that already have a run, so start from none.
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == DAG_ID))
    airflow = [sys.executable, "-m", "airflow"]
    env = dict(os.environ)
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.run(
        [
            *airflow,
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            first.isoformat(),
            "--to-date",
            last.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with create_session() as session:
        runs = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == DAG_ID, DagRun.run_id.like("backfill__%"))
            .order_by(DagRun.logical_date)
        ).all()
        got = [(r.data_interval_start, r.data_interval_end) for r in runs]
        ids = [r.run_id for r in runs]
    days = [first + timedelta(days=n) for n in range(3)]
    assert got == [tuple(day_interval(d, TZ)) for d in days]
    # Airflow 3.3.2 names backfill runs itself (models/backfill.py: DagRun.generate_run_id with run_after,
    # not the timetable's generate_run_id): backfill__<D+1 at the schedule time, UTC>.
    assert ids == [
        f"backfill__{LocalDayTimetable(at='05:00', timezone=TZ).run_after(d).isoformat()}" for d in days
    ]
