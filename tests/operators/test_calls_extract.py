"""CalltouchExtractOperator(kind="calls") against the sandbox: the stored Parquet is the day's calls,
partitioned by site and local day, re-runs replace their own partition, filters reach the API, phone
numbers can be hashed; and the local-day arithmetic of the run's data interval."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pyarrow.parquet as pq
import pytest

from calltouch_metrika.operators.calltouch import CalltouchExtractOperator, check_days_ended, local_interval
from tests.helpers import SITE_ID, recent_day, run_dag, task_states, write_config, xcom

DAG_ID = "calltouch_calls_to_metrika__e2e"


def _records(day: date, **params: Any) -> list[dict]:
    from calltouch_metrika.hooks.calltouch import CalltouchHook

    return CalltouchHook("calltouch_default", site_id=SITE_ID).get_calls(day, day, **params)


def _extract(root: Path, **kw: Any) -> dict:
    op = CalltouchExtractOperator(task_id="extract", site_id=SITE_ID, storage_root=str(root), **kw)
    return op.execute({})


def _read(path: str):
    return pq.read_table(path.removeprefix("file://"))


# -- local days of the data interval ----------------------------------------------------------------
def test_local_interval_of_a_scheduled_run() -> None:
    # local day 2026-11-23 in Moscow: [23rd 00:00, 24th 00:00) MSK == [22nd 21:00, 23rd 21:00) UTC
    ctx = {
        "data_interval_start": pendulum.datetime(2026, 11, 22, 21, tz="UTC"),
        "data_interval_end": pendulum.datetime(2026, 11, 23, 21, tz="UTC"),
    }
    assert local_interval(ctx, "Europe/Moscow") == (date(2026, 11, 23), date(2026, 11, 24))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        # the former cron interval [23rd 05:00, 24th 05:00) MSK: not a local day
        (pendulum.datetime(2026, 11, 23, 2, tz="UTC"), pendulum.datetime(2026, 11, 24, 2, tz="UTC")),
        # a zero-length interval (apache/airflow#70089) is never widened into "that day"
        (pendulum.datetime(2026, 3, 29, 1, 45, tz="UTC"), pendulum.datetime(2026, 3, 29, 1, 45, tz="UTC")),
        # two days
        (pendulum.datetime(2026, 11, 22, 21, tz="UTC"), pendulum.datetime(2026, 11, 24, 21, tz="UTC")),
    ],
)
def test_an_interval_that_is_not_one_local_day_is_an_error_naming_it(start: Any, end: Any) -> None:
    ctx = {"data_interval_start": start, "data_interval_end": end}
    with pytest.raises(ValueError, match="is not exactly one local day of Europe/Moscow") as exc:
        local_interval(ctx, "Europe/Moscow")
    assert start.isoformat() in str(exc.value) and end.isoformat() in str(exc.value)


def test_a_logical_date_naming_another_day_than_the_interval_is_an_error() -> None:
    """`airflow dags trigger -l 2026-11-25` infers the interval from the trigger time (Airflow 3.3.2,
    api/common/trigger_dag.py): the run must not silently process the day before the trigger."""
    ctx = {
        "logical_date": pendulum.datetime(2026, 11, 25, tz="UTC"),
        "data_interval_start": pendulum.datetime(2026, 11, 28, 21, tz="UTC"),
        "data_interval_end": pendulum.datetime(2026, 11, 29, 21, tz="UTC"),
    }
    with pytest.raises(
        ValueError, match="names day 2026-11-25 but the run's data interval is day 2026-11-29"
    ):
        local_interval(ctx, "Europe/Moscow")
    # the scheduler's and backfill's logical date (local midnight) and the UI's "now" agree with the interval
    for logical in (
        pendulum.datetime(2026, 11, 28, 21, tz="UTC"),
        pendulum.datetime(2026, 11, 30, 6, 31, tz="UTC"),
    ):
        assert local_interval({**ctx, "logical_date": logical}, "Europe/Moscow")[0] == date(2026, 11, 29)


def test_a_day_that_has_not_ended_is_refused_naming_the_day_and_its_end() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    now = pendulum.datetime(2026, 11, 30, 20, 59, tz="UTC")  # 23:59 in Moscow
    with pytest.raises(AirflowFailException) as exc:
        check_days_ended(date(2026, 11, 30), "Europe/Moscow", now=now)
    assert str(exc.value).startswith(
        "day 2026-11-30 has not ended yet in Europe/Moscow: it ends at 2026-12-01T00:00:00+03:00 "
        "(2026-11-30T21:00:00+00:00); nothing was extracted or uploaded."
    )
    check_days_ended(date(2026, 11, 30), "Europe/Moscow", now=now.add(minutes=1))  # ended: no error


def test_local_interval_of_a_manual_run_without_logical_date() -> None:
    class Run:
        run_after = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 01:30 on the 25th in Moscow

    assert local_interval({"dag_run": Run()}, "Europe/Moscow") == (date(2026, 11, 24), date(2026, 11, 25))


def test_params_contract_keeps_only_the_tasks_own_entries() -> None:
    from airflow.sdk import DAG, Param

    with DAG("p", schedule=None, start_date=datetime(2026, 1, 1), params={"dry_run": Param(False)}):
        op = CalltouchExtractOperator(
            task_id="x", site_id=1, storage_root="/tmp", params={"target_only": True, "with_call_tags": True}
        )
        plain = CalltouchExtractOperator(task_id="y", site_id=1, storage_root="/tmp")
    assert op.api_params == {"target_only": True, "with_call_tags": True}
    assert plain.api_params == {}


def test_bad_dates_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="date_from must be a date"):
        _extract(tmp_path, date_from="yesterday")
    with pytest.raises(ValueError, match=r"date_to .* must be after date_from"):
        _extract(tmp_path, date_from="2026-11-20", date_to="2026-11-20")
    with pytest.raises(ValueError, match="kind must be"):
        CalltouchExtractOperator(task_id="z", kind="leads", site_id=1, storage_root="/tmp")


# -- against the sandbox ----------------------------------------------------------------------------
@pytest.mark.integration
def test_one_file_per_local_day_with_exactly_that_days_calls(sandbox, tmp_path: Path) -> None:
    from calltouch_metrika.transforms.records import calls_to_table

    first = recent_day() - timedelta(days=2)
    sandbox.reset(volume_overrides={f"{SITE_ID}:{first + timedelta(days=1)}": 7})
    out = _extract(tmp_path, date_from=first.isoformat(), date_to=(first + timedelta(days=3)).isoformat())
    days = [first + timedelta(days=i) for i in range(3)]
    assert out["days"] == [d.isoformat() for d in days]
    assert out["rows_by_day"] == {days[0].isoformat(): 150, days[1].isoformat(): 7, days[2].isoformat(): 150}
    assert out["rows"] == 307 and out["kind"] == "calls" and out["site_id"] == SITE_ID
    assert (out["date_from"], out["date_to"]) == (
        days[0].isoformat(),
        (days[2] + timedelta(days=1)).isoformat(),
    )
    for day, path in zip(days, out["paths"], strict=True):
        assert path.endswith(f"/calltouch/calls/site={SITE_ID}/date={day}/calls.parquet")
        stored = _read(path)
        assert stored.equals(calls_to_table(_records(day)).cast(stored.schema))
    assert out["path"] == out["paths"][0]


@pytest.mark.integration
def test_multi_day_interval_writes_one_partition_per_day_in_day_order(sandbox, tmp_path: Path) -> None:
    """Days are fetched concurrently, but partitions are written one per day, in day order.

    The first day is the slowest to complete (3 pages, the later ones after its first page), the next
    days are small or empty and complete first; ``rows_by_day`` is filled as each day is written, so
    its order is the order in which the operator received the days.
    """
    first = recent_day() - timedelta(days=5)
    days = [first + timedelta(days=i) for i in range(6)]
    volumes = dict(zip(days, [2500, 3, 0, 1001, 1, 150], strict=True))
    sandbox.reset(volume_overrides={f"{SITE_ID}:{day}": n for day, n in volumes.items()})
    out = _extract(tmp_path, date_from=first.isoformat(), date_to=(days[-1] + timedelta(days=1)).isoformat())
    assert list(out["rows_by_day"].items()) == [(day.isoformat(), n) for day, n in volumes.items()]
    assert out["rows"] == sum(volumes.values())
    partitions = tmp_path / "calltouch" / "calls" / f"site={SITE_ID}"
    assert sorted(p.name for p in partitions.iterdir()) == [f"date={day}" for day in days]
    assert [p.removeprefix("file://") for p in out["paths"]] == [
        str(partitions / f"date={day}" / "calls.parquet") for day in days
    ]
    for day, path in zip(days, out["paths"], strict=True):
        stored = _read(path)
        assert stored.num_rows == volumes[day]
        assert all(d.startswith(day.strftime("%d/%m/%Y ")) for d in stored.column("date").to_pylist())
        assert len(set(stored.column("callId").to_pylist())) == volumes[day]  # no page twice or lost


@pytest.mark.integration
def test_rerun_replaces_its_own_partition(sandbox, tmp_path: Path) -> None:
    day = recent_day()
    out = _extract(tmp_path, date_from=day.isoformat())
    sandbox.reset(volume_overrides={f"{SITE_ID}:{day}": 3})
    again = _extract(tmp_path, date_from=day.isoformat())
    assert again["path"] == out["path"]
    assert _read(again["path"]).num_rows == 3
    assert sorted(p.name for p in Path(again["path"].removeprefix("file://")).parent.iterdir()) == [
        "calls.parquet"
    ]


@pytest.mark.integration
def test_filters_reach_the_api(sandbox, tmp_path: Path) -> None:
    day = recent_day()
    out = _extract(tmp_path, date_from=day.isoformat(), api_params={"target_only": True})
    stored = _read(out["path"])
    assert 0 < stored.num_rows < 150
    assert all(stored.column("targetCall").to_pylist())
    assert stored.column("callId").to_pylist() == [r["callId"] for r in _records(day, target_only=True)]


@pytest.mark.integration
@pytest.mark.airflow
def test_hashed_phone_numbers_never_reach_storage(
    sandbox, airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_CALLTOUCH_METRIKA_PHONE_SALT", "pepper-for-tests")
    write_config(tmp_path, monkeypatch, hash_phone_numbers=True)
    day = recent_day()
    dr = run_dag(DAG_ID, day, conf={"dry_run": True})
    assert task_states(dr)["extract"] == "success", task_states(dr)
    stored = _read(xcom(dr, "extract")["path"])
    raw = {r["callerNumber"] for r in _records(day) if r.get("callerNumber")}
    assert raw, "the sandbox should give caller numbers"
    hashed = set(stored.column("callerNumber").drop_null().to_pylist())
    assert hashed and not (hashed & raw)
    assert all(len(h) == 64 for h in hashed)
    assert all(stored.column("phonesHashed").to_pylist())
    csv_text = Path(xcom(dr, "upload")["csv_path"].removeprefix("file://")).read_text()
    assert not any(number[-10:] in csv_text for number in raw)
