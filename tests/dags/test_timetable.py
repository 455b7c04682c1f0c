"""LocalDayTimetable (issue 11): one run per local calendar day, named by the day everywhere.

Scheduling and daylight saving go through the timetable's own protocol methods, exactly as the
scheduler calls them; backfills through Airflow's own enumeration (``models.backfill._get_info_list``)
of the serialized DAG; a real ``airflow backfill create`` and ``airflow dags test`` run in
``test_local_day_cli.py``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pendulum
import pytest
import yaml

from calltouch_metrika.timetables import LocalDayTimetable, day_interval, interval_day, named_day

# (time zone, run time inside the skipped hour, run time inside the repeated hour)
DST_ZONES = [
    ("Europe/Berlin", "02:30", "02:30"),  # 2026-03-29 02:00-03:00 skipped; 2026-10-25 02:00-03:00 twice
    ("America/New_York", "02:30", "01:30"),  # 2026-03-08 02:00-03:00 skipped; 2026-11-01 01:00-02:00 twice
    ("Europe/Moscow", "02:30", "01:30"),  # no DST since 2014: every day 24 h
]


def _iterate(tt: LocalDayTimetable, first: dt.date, last: dt.date) -> list[Any]:
    from airflow.timetables.base import TimeRestriction

    start = pendulum.datetime(first.year, first.month, first.day, tz=tt.timezone)
    restriction = TimeRestriction(earliest=start, latest=None, catchup=True)
    infos, prev = [], None
    while True:
        info = tt.next_dagrun_info(last_automated_data_interval=prev, restriction=restriction)
        assert info is not None
        if tt.local_date(info.data_interval.start) > last:
            return infos
        infos.append(info)
        prev = info.data_interval


@pytest.mark.parametrize("at_kind", ["skipped", "repeated"])
@pytest.mark.parametrize(("tz", "skipped", "repeated"), DST_ZONES)
def test_every_local_day_gets_exactly_one_run_in_order_over_more_than_a_year(
    tz: str, skipped: str, repeated: str, at_kind: str
) -> None:
    at = skipped if at_kind == "skipped" else repeated
    tt = LocalDayTimetable(at=at, timezone=tz)
    first, last = dt.date(2026, 1, 1), dt.date(2027, 3, 31)
    infos = _iterate(tt, first, last)
    days = [tt.local_date(i.data_interval.start) for i in infos]
    assert days == [
        first + dt.timedelta(days=n) for n in range((last - first).days + 1)
    ]  # none skipped/twice
    zone = pendulum.timezone(tz)
    hh, mm = (int(x) for x in at.split(":"))
    lengths = set()
    for day, info in zip(days, infos, strict=True):
        start = pendulum.instance(info.data_interval.start).in_timezone(zone)
        end = pendulum.instance(info.data_interval.end).in_timezone(zone)
        assert (start.date(), start.time()) == (day, dt.time(0, 0))
        assert (end.date(), end.time()) == (day + dt.timedelta(days=1), dt.time(0, 0))
        assert info.logical_date == info.data_interval.start
        lengths.add((end - start).in_hours())
        run_after = pendulum.instance(info.run_after).in_timezone(zone)
        assert run_after > end and run_after.date() == day + dt.timedelta(days=1)  # after the day ended
        if (run_after.hour, run_after.minute) != (hh, mm):  # only inside the skipped hour: its end
            assert (run_after.hour, run_after.minute) == (hh + 1, 0)
    runs_after = [i.run_after for i in infos]
    assert runs_after == sorted(runs_after) and len(set(runs_after)) == len(runs_after)
    assert lengths == ({24} if tz == "Europe/Moscow" else {23, 24, 25})


def test_run_times_on_the_transition_days() -> None:
    berlin = LocalDayTimetable(at="02:30", timezone="Europe/Berlin")
    # the run of 28 March starts on 29 March, whose 02:30 does not exist: 03:00 CEST, the end of the gap
    assert berlin.run_after(dt.date(2026, 3, 28)).isoformat() == "2026-03-29T01:00:00+00:00"
    # the run of 24 October starts at the first 02:30 of 25 October (CEST)
    assert berlin.run_after(dt.date(2026, 10, 24)).isoformat() == "2026-10-25T00:30:00+00:00"
    ny = LocalDayTimetable(at="01:30", timezone="America/New_York")
    assert ny.run_after(dt.date(2026, 10, 31)).isoformat() == "2026-11-01T05:30:00+00:00"  # first 01:30 (EDT)


@pytest.mark.parametrize(("tz", "skipped", "repeated"), DST_ZONES)
def test_manual_runs_on_both_transition_days_process_the_day_named(
    tz: str, skipped: str, repeated: str
) -> None:
    transitions = {
        "Europe/Berlin": [dt.date(2026, 3, 29), dt.date(2026, 10, 25)],
        "America/New_York": [dt.date(2026, 3, 8), dt.date(2026, 11, 1)],
        "Europe/Moscow": [dt.date(2026, 3, 29), dt.date(2026, 10, 25)],
    }[tz]
    for at in (skipped, repeated):
        tt = LocalDayTimetable(at=at, timezone=tz)
        for day in transitions:
            expected = day_interval(day, tz)
            # `airflow dags test DAG 2026-03-29` passes midnight UTC; the UI can pass local midnight
            for named in (
                pendulum.datetime(day.year, day.month, day.day, tz="UTC"),
                pendulum.datetime(day.year, day.month, day.day, tz=tz),
            ):
                interval = tt.infer_manual_data_interval(run_after=named)
                assert interval == expected, (tz, at, day, named)
                assert interval_day(interval.start, interval.end, tz) == day
            # "now" during the transition day: the last complete day, never a zero-length interval
            for hour in range(1, 24):
                now = pendulum.datetime(day.year, day.month, day.day, hour, 17, tz="UTC")
                local_now = now.in_timezone(tz).date()
                assert tt.last_complete_day(now) == local_now - dt.timedelta(days=1)
                interval = day_interval(tt.last_complete_day(now), tz)
                assert interval.end > interval.start and interval.end <= now


def test_issue_examples_of_manual_runs() -> None:
    berlin = LocalDayTimetable(at="02:30", timezone="Europe/Berlin")
    # 2026-03-29T01:45Z (03:45 CEST) names no day: an error naming it, not a guessed day (findings 3)
    with pytest.raises(ValueError, match=r"2026-03-29T01:45:00\+00:00 .* names no day"):
        berlin.infer_manual_data_interval(run_after=pendulum.datetime(2026, 3, 29, 1, 45))
    # ... while "now" on that day is the last complete day
    assert berlin.last_complete_day(pendulum.datetime(2026, 3, 29, 1, 45)) == dt.date(2026, 3, 28)
    assert berlin.last_complete_day(pendulum.datetime(2026, 10, 25, 0, 30)) == dt.date(2026, 10, 24)
    moscow = LocalDayTimetable(at="05:00", timezone="Europe/Moscow")
    # `airflow dags test DAG 2026-11-29` -> 29 November (it used to process the 27th)
    assert moscow.infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 29)) == day_interval(
        dt.date(2026, 11, 29), "Europe/Moscow"
    )


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-29T00:00:01Z",  # a second after UTC midnight: used to give day 27
        "2026-11-28T21:00:00Z",  # midnight of the 29th in a Moscow browser: used to give day 27
        "2026-11-29T12:00:00Z",  # `airflow dags test DAG 2026-11-29T12:00`: used to give day 28
        "2026-11-29T05:00:00+03:00",  # the former cron tick
    ],
)
def test_a_logical_date_that_names_no_day_fails_naming_it(value: str) -> None:
    """Findings 3: never silently a different day; the message names the instant and how to name a day."""
    tt = LocalDayTimetable(at="05:00", timezone="America/New_York")
    instant = pendulum.parse(value)
    with pytest.raises(ValueError) as exc:
        tt.infer_manual_data_interval(run_after=instant)
    msg = str(exc.value)
    assert instant.isoformat() in msg and "names no day" in msg
    assert "airflow dags test <dag> 2026-11-" in msg and "'now'" in msg


def test_now_is_the_last_complete_day() -> None:
    for tz in ("America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe", "Europe/Moscow"):
        tt = LocalDayTimetable(at="05:00", timezone=tz)
        now = pendulum.now("UTC")
        yesterday = now.in_timezone(tz).date() - dt.timedelta(days=1)
        for instant in (now, now - dt.timedelta(minutes=30), now + dt.timedelta(minutes=1)):
            assert tt.infer_manual_data_interval(run_after=instant) == day_interval(yesterday, tz)


# Zones whose transitions are at midnight (Havana, Santiago, Asuncion, Cairo, Beirut), 30 minutes
# long (Lord_Howe), at odd offsets (Kathmandu, Chatham), crossing midnight (Scoresbysund), plus the
# usual ones: every local day is [first instant of D, first instant of D+1).
EDGE_ZONES = [
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "Africa/Cairo",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Scoresbysund",
    "Europe/Berlin",
    "America/New_York",
    "UTC",
]


def _first_instant_by_scan(day: dt.date, tz: str) -> pendulum.DateTime:
    """The first instant whose local date is ``day``, by a minute scan (independent of the code)."""
    zone = pendulum.timezone(tz)
    t = pendulum.datetime(day.year, day.month, day.day, tz="UTC").subtract(hours=15)
    while t.in_timezone(zone).date() < day:
        t = t.add(minutes=15)
    step = t.subtract(minutes=15)
    while step.in_timezone(zone).date() < day:
        step = step.add(seconds=60)
    return step


@pytest.mark.parametrize("at", ["00:00", "00:30", "23:30"])
@pytest.mark.parametrize("tz", EDGE_ZONES)
def test_every_day_is_first_instant_to_first_instant_and_runs_after_it_ends(tz: str, at: str) -> None:
    """Findings 2 and 12: midnight fall-back/spring-forward, 30-minute DST, odd offsets; 2025 to 2026."""
    tt = LocalDayTimetable(at=at, timezone=tz)
    first, last = dt.date(2025, 1, 1), dt.date(2026, 1, 10)
    infos = _iterate(tt, first, last)
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    assert [tt.local_date(i.data_interval.start) for i in infos] == days
    zone = pendulum.timezone(tz)
    hh, mm = (int(x) for x in at.split(":"))
    for prev, info in itertools.pairwise(infos):
        assert prev.data_interval.end == info.data_interval.start  # contiguous: no gap, no overlap
        assert prev.run_after < info.run_after
    for day, info in zip(days, infos, strict=True):
        start, end = info.data_interval.start, info.data_interval.end
        assert pendulum.instance(start).in_timezone(zone).date() == day
        assert pendulum.instance(start).subtract(seconds=1).in_timezone(zone).date() < day
        assert pendulum.instance(end).in_timezone(zone).date() == day + dt.timedelta(days=1)
        assert pendulum.instance(end).subtract(seconds=1).in_timezone(zone).date() == day
        assert info.run_after >= end  # the run starts after its day has ended
        local_run = pendulum.instance(info.run_after).in_timezone(zone)
        if (local_run.hour, local_run.minute) != (hh, mm):  # the wall time is skipped that day
            assert info.run_after - end <= dt.timedelta(days=1, hours=1)
        # the named day of the run's own logical date is that day; the timetable agrees
        assert named_day(info.logical_date, tz) == day
        assert tt.infer_manual_data_interval(run_after=info.logical_date) == info.data_interval
    for day in (dt.date(2025, 3, 9), dt.date(2025, 9, 7), dt.date(2025, 11, 2), dt.date(2025, 4, 6)):
        assert day_interval(day, tz).start == _first_instant_by_scan(day, tz)


def test_the_findings_examples_of_day_boundaries() -> None:
    from calltouch_metrika.operators.calltouch import check_days_ended

    # Havana goes back from 01:00 to 00:00 on 2 November 2025: the repeated hour is the 2nd's
    havana = day_interval(dt.date(2025, 11, 1), "America/Havana")
    assert (havana.start.isoformat(), havana.end.isoformat()) == (
        "2025-11-01T04:00:00+00:00",
        "2025-11-02T04:00:00+00:00",
    )
    assert (day_interval(dt.date(2025, 11, 2), "America/Havana").end - havana.end) == dt.timedelta(hours=25)
    for at in ("00:30", "00:00"):
        tt = LocalDayTimetable(at=at, timezone="America/Havana")
        run_after = tt.run_after(dt.date(2025, 11, 1))
        assert run_after >= havana.end
        check_days_ended(dt.date(2025, 11, 1), "America/Havana", now=run_after)  # the scheduled run passes
    # Santiago: midnight of 7 September 2025 does not exist; the day starts at 01:00 -03
    santiago = day_interval(dt.date(2025, 9, 7), "America/Santiago")
    assert santiago.start.isoformat() == "2025-09-07T04:00:00+00:00"
    # Scoresbysund: 23:00-24:00 of 29 March 2025 does not exist; the run of the 28th at 23:30 starts
    # at the end of that gap, not 30 minutes later
    scoresby = LocalDayTimetable(at="23:30", timezone="America/Scoresbysund")
    assert (
        scoresby.run_after(dt.date(2025, 3, 28))
        == day_interval(dt.date(2025, 3, 30), "America/Scoresbysund").start
    )
    # Lord Howe's 30-minute DST: 2025-04-06 is 24.5 hours long
    lh = day_interval(dt.date(2025, 4, 6), "Australia/Lord_Howe")
    assert lh.end - lh.start == dt.timedelta(hours=24, minutes=30)


def test_named_day() -> None:
    assert named_day(pendulum.datetime(2026, 11, 29), "Europe/Moscow") == dt.date(2026, 11, 29)
    assert named_day(pendulum.datetime(2026, 11, 28, 21), "Europe/Moscow") == dt.date(2026, 11, 29)
    assert named_day(pendulum.datetime(2026, 11, 29, 12), "Europe/Moscow") is None


def test_run_ids_name_the_local_day() -> None:
    from airflow.utils.types import DagRunType

    tt = LocalDayTimetable(at="05:00", timezone="Europe/Moscow")
    info = tt.day_info(dt.date(2026, 11, 29))
    kw = {"run_after": info.run_after, "data_interval": info.data_interval}
    assert tt.generate_run_id(run_type=DagRunType.SCHEDULED, **kw) == "scheduled__2026-11-29"
    assert tt.generate_run_id(run_type=DagRunType.BACKFILL_JOB, **kw) == "backfill__2026-11-29"
    manual = tt.generate_run_id(
        run_type=DagRunType.MANUAL,
        run_after=pendulum.datetime(2026, 11, 30, 6, 31),
        data_interval=info.data_interval,
    )
    assert manual == "manual__2026-11-29__2026-11-30T06:31:00+00:00"
    assert tt.summary == "daily 05:00 Europe/Moscow (local day)"
    assert "05:00" in tt.description and "Europe/Moscow" in tt.description


def test_upgrade_from_the_cron_timetable_continues_with_the_next_day() -> None:
    """A DAG whose last scheduled run was the former cron interval [28th 05:00, 29th 05:00) MSK (day 28)."""
    from airflow.timetables.base import DataInterval, TimeRestriction

    tt = LocalDayTimetable(at="05:00", timezone="Europe/Moscow")
    old = DataInterval(pendulum.datetime(2026, 11, 28, 2), pendulum.datetime(2026, 11, 29, 2))
    restriction = TimeRestriction(
        earliest=pendulum.datetime(2026, 11, 1, tz="Europe/Moscow"), latest=None, catchup=True
    )
    info = tt.next_dagrun_info(last_automated_data_interval=old, restriction=restriction)
    assert info is not None and tt.local_date(info.data_interval.start) == dt.date(2026, 11, 29)


def test_catchup_off_starts_with_the_last_complete_day() -> None:
    from airflow.timetables.base import TimeRestriction

    tt = LocalDayTimetable(at="05:00", timezone="Europe/Moscow")
    restriction = TimeRestriction(
        earliest=pendulum.datetime(2026, 1, 1, tz="Europe/Moscow"), latest=None, catchup=False
    )
    info = tt.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert info is not None
    assert tt.local_date(info.data_interval.start) == pendulum.now("Europe/Moscow").date() - dt.timedelta(
        days=1
    )


def test_serialization_round_trip_and_plugin_registration() -> None:
    from airflow import plugins_manager

    tt = LocalDayTimetable(at="5:07", timezone="America/New_York")
    assert tt.serialize() == {"at": "05:07", "timezone": "America/New_York"}
    assert LocalDayTimetable.deserialize(tt.serialize()) == tt
    registered = plugins_manager.get_timetables_plugins()
    assert registered["calltouch_metrika.timetables.LocalDayTimetable"] is LocalDayTimetable
    with pytest.raises(ValueError, match="HH:MM"):
        LocalDayTimetable(at="25:00")


# -- backfill: Airflow's own enumeration of the serialized DAG ---------------------------------------


def _serialized_calls_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tz: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "pipelines": [
                    {"name": "bf", "site_id": 1, "counter_id": 2, "start_date": "2026-11-01", "timezone": tz}
                ]
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(cfg))
    dags_dir = Path(__file__).resolve().parents[2] / "dags"
    bag = DagBag(dag_folder=str(dags_dir / "calltouch_calls_to_metrika.py"))
    dag = bag.dags["calltouch_calls_to_metrika__bf"]
    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


@pytest.mark.parametrize("tz", ["Europe/Moscow", "America/New_York", "Asia/Tokyo", "Europe/Berlin", "UTC"])
def test_backfill_from_a_to_b_enumerates_exactly_days_a_to_b(
    tz: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow._shared.timezones.timezone import parse  # the CLI's own parser of --from-date/--to-date
    from airflow.models.backfill import _get_info_list

    dag = _serialized_calls_dag(tmp_path, monkeypatch, tz)
    tt = dag.timetable
    assert isinstance(tt, LocalDayTimetable)
    # as `airflow backfill create --from-date 2026-11-20 --to-date 2026-11-22` parses them (and the UI form)
    for a, b in [("2026-11-20", "2026-11-22"), ("2026-11-20T00:00:00+00:00", "2026-11-22T00:00:00+00:00")]:
        infos = _get_info_list(from_date=parse(a), to_date=parse(b), reverse=False, dag=dag)
        days = [tt.local_date(i.logical_date) for i in infos]
        assert days == [dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)], (tz, a, b)
        assert [interval_day(i.data_interval.start, i.data_interval.end, tz) for i in infos] == days
    # midnight of the pipeline's own clock names the same days
    a = pendulum.datetime(2026, 11, 20, tz=tz)
    b = pendulum.datetime(2026, 11, 22, tz=tz)
    infos = _get_info_list(from_date=a, to_date=b, reverse=True, dag=dag)
    assert [tt.local_date(i.logical_date) for i in infos] == [dt.date(2026, 11, d) for d in (22, 21, 20)]
    # a day that has not ended is never part of a backfill
    today = pendulum.now(tz).date()
    infos = _get_info_list(
        from_date=parse((today - dt.timedelta(days=2)).isoformat()),
        to_date=parse(today.isoformat()),
        reverse=False,
        dag=dag,
    )
    assert [tt.local_date(i.logical_date) for i in infos] == [
        today - dt.timedelta(days=2),
        today - dt.timedelta(days=1),
    ]


def test_the_ui_trigger_path_names_the_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The REST body the UI's Trigger form posts (``TriggerDAGRunPostBody.validate_context``)."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody

    dag = _serialized_calls_dag(tmp_path, monkeypatch, "Europe/Moscow")
    now = pendulum.now("UTC")
    yesterday = now.in_timezone("Europe/Moscow").date() - dt.timedelta(days=1)
    ctx = TriggerDAGRunPostBody(logical_date=now).validate_context(dag)  # the form's default: now
    assert ctx["data_interval"] == day_interval(yesterday, "Europe/Moscow")
    assert ctx["run_id"].startswith(f"manual__{yesterday.isoformat()}__")
    chosen = pendulum.datetime(2026, 11, 25, tz="UTC")  # the form's logical date set to 25 November 00:00
    ctx = TriggerDAGRunPostBody(logical_date=chosen).validate_context(dag)
    assert ctx["data_interval"] == day_interval(dt.date(2026, 11, 25), "Europe/Moscow")
    assert ctx["run_id"].startswith("manual__2026-11-25__")
