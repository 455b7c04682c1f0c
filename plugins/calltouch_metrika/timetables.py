"""One DAG run per local calendar day: :class:`LocalDayTimetable` (issue 11).

Why not a cron timetable: users name *days* ("send 29 November", "backfill 20 to 22 November"),
and Airflow's cron timetables map those words to intervals that start at the cron time, infer the
interval *before* a manual date, and on daylight-saving days can produce a zero-length interval
(apache/airflow#70089; ../shared/airflow3-notes.md §0 items 13-14). This timetable makes the day
explicit:

* the run for local day ``D`` of the pipeline's time zone has the data interval
  [first instant of ``D``, first instant of ``D+1``): ``[D 00:00, D+1 00:00)`` on that clock (23, 24
  or 25 hours long; where the clock goes back at midnight the repeated hour belongs to the later
  day, where midnight does not exist the day begins at the end of the gap); its logical date is
  the interval start, and it starts at ``at`` (e.g. ``05:00``) on ``D+1``, local time, so the day
  has ended;
* a time of day that does not exist on ``D+1`` (inside a spring-forward gap) starts the run at the
  end of the gap (02:30 -> 03:00); a time that occurs twice (fall-back) at its first occurrence;
* :meth:`LocalDayTimetable.generate_run_id` names runs by the day: the scheduler's runs are
  ``scheduled__2026-11-29``, UI/REST manual runs ``manual__2026-11-29__<trigger time>``. Airflow 3.3.2
  does not ask the timetable for backfill runs (``backfill__<run_after>``, models/backfill.py) nor for
  ``dags test`` runs (``manual__<now>``); their data interval and task summaries still name the day.

**Which day a manual logical date names** (:func:`named_day`, README "Choosing the day"): the first
instant of a local day of the pipeline's zone (its midnight) names that day; a datetime that is
exactly midnight on its own clock (``airflow dags test DAG 2026-11-29`` passes
``2026-11-29T00:00:00+00:00``) names its calendar date; the current time (the UI's default "now",
within :data:`NOW_TOLERANCE`) means the **last complete local day**; any other instant is an error
naming it (no day is guessed). A backfill bound that names no day is rounded to the day it falls in.

This module is imported while DAG files are parsed and by the scheduler, dag-processor and
api-server through the plugin ``plugins/calltouch_metrika_plugin.py``; it stays light.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction
    from pendulum import DateTime

__all__ = ["LocalDayTimetable", "day_interval", "interval_day", "named_day"]

_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _tz(timezone: Any) -> Any:
    return pendulum.timezone(timezone) if isinstance(timezone, str) else timezone


def _zone(timezone: Any) -> ZoneInfo:
    """A :class:`zoneinfo.ZoneInfo` for a name or a tz object (pendulum's time zones are ZoneInfo)."""
    if isinstance(timezone, ZoneInfo):
        return timezone
    return ZoneInfo(str(getattr(timezone, "name", None) or timezone))


def first_instant(wall: dt.datetime, timezone: Any) -> pendulum.DateTime:
    """The first instant whose local wall time (in ``timezone``) is ``wall`` or later, in UTC.

    ``wall`` is naive. A wall time that occurs twice (fall-back) gives its first occurrence; one
    inside a spring-forward gap (it does not exist) gives the end of the gap, the transition instant.
    So ``first_instant(D 00:00)`` is where local day D begins in every zone, also where the clock
    goes back at midnight (America/Havana) or midnight does not exist (America/Santiago).
    """
    zone = _zone(timezone)
    candidates = [wall.replace(tzinfo=zone, fold=f).astimezone(dt.UTC) for f in (0, 1)]
    exact = [u for u in candidates if u.astimezone(zone).replace(tzinfo=None) == wall]
    if exact:
        return pendulum.instance(min(exact))
    # In a gap: the wall time is skipped; the answer is the transition, the smallest instant whose
    # wall time is >= ``wall``. It lies between the two candidates; offsets are whole seconds.
    lo, hi = (int(u.timestamp()) for u in sorted(candidates))
    while lo < hi:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return pendulum.from_timestamp(lo, tz="UTC")


def day_interval(day: dt.date, timezone: Any) -> DataInterval:
    """The data interval of local ``day``: [first instant of ``day``, first instant of ``day`` + 1) in UTC.

    Usually ``[day 00:00, day+1 00:00)`` on the zone's clock (23, 24 or 25 hours long); where the
    clock goes back at midnight the repeated hour belongs to the later day, where midnight does
    not exist the day begins at the end of the gap (:func:`first_instant`).
    """
    nxt = day + dt.timedelta(days=1)
    start = first_instant(dt.datetime(day.year, day.month, day.day), timezone)
    end = first_instant(dt.datetime(nxt.year, nxt.month, nxt.day), timezone)
    return DataInterval(start=start.in_timezone("UTC"), end=end.in_timezone("UTC"))


def interval_day(start: dt.datetime, end: dt.datetime, timezone: Any) -> dt.date:
    """The local day an interval is, or :class:`ValueError` naming it when it is not exactly one local day."""
    tz = _tz(timezone)
    local_start = pendulum.instance(start).in_timezone(tz)
    day = local_start.date()
    expected = day_interval(day, tz)
    if pendulum.instance(start) != expected.start or pendulum.instance(end) != expected.end:
        raise ValueError(
            f"the data interval {pendulum.instance(start).isoformat()} -> {pendulum.instance(end).isoformat()} "
            f"is not exactly one local day of {getattr(tz, 'name', tz)} "
            f"(day {day} would be {expected.start.in_timezone(tz).isoformat()} -> "
            f"{expected.end.in_timezone(tz).isoformat()}); trigger the run with a logical date naming the "
            "day (e.g. 2026-11-29) and no explicit data interval"
        )
    return day


def _is_midnight(value: dt.datetime) -> bool:
    return (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)


#: How far a manual logical date may lie from the current time to mean "now" (the UI's default):
#: the form is filled in when it opens, and a minute may pass before it is sent.
NOW_TOLERANCE = dt.timedelta(hours=1)
NOW_AHEAD = dt.timedelta(minutes=5)

HOW_TO_NAME_A_DAY = (
    "name a day by its midnight: `airflow dags test <dag> {day}` (a bare date) or, on the Trigger form, "
    "the logical date {day} 00:00 (UTC or {tz}) for day {day}; leave it at 'now' for the last complete day"
)


def named_day(value: dt.datetime, timezone: Any) -> dt.date | None:
    """The local day a bound or a manual logical date names, or None if it is just an instant.

    The rule (README, "Choosing the day"):

    * the first instant of local day D in ``timezone`` (D 00:00, or the end of the gap where
      midnight does not exist) names D: a scheduled run's own logical date, or midnight picked on
      the Trigger form in the pipeline's zone;
    * else a datetime that is exactly midnight on its own clock names its calendar date: the CLI
      turns a bare date (``airflow dags test DAG 2026-11-29``, ``backfill --from-date``) into
      ``2026-11-29T00:00:00+00:00``; no zone's midnight is another date's UTC midnight.

    Anything else (``2026-11-29T12:00``, the UI's "now") names no day.
    """
    instant = pendulum.instance(value)
    local_date = instant.in_timezone(_tz(timezone)).date()
    if instant == day_interval(local_date, timezone).start:
        return local_date
    if _is_midnight(instant):
        return instant.date()
    return None


class LocalDayTimetable(Timetable):
    """Each run is one local calendar day; it starts at ``at`` local time the next day.

    :param at: the time of day the run for day D starts on D+1, ``"HH:MM"`` (local time).
    :param timezone: the IANA time zone whose calendar days are the runs' days.
    :raises ValueError: ``at`` is not ``HH:MM`` or the time zone is unknown.
    """

    def __init__(self, at: str = "05:00", timezone: str = "Europe/Moscow") -> None:
        m = _AT.match(at)
        if not m:
            raise ValueError(f"'at' must be a time of day HH:MM, got {at!r}")
        self.at = f"{int(m.group(1)):02d}:{m.group(2)}"
        self._time = dt.time(int(m.group(1)), int(m.group(2)))
        self.timezone = str(timezone)
        self._tz = pendulum.timezone(self.timezone)
        self.description = (
            f"One run per local day of {self.timezone} ([D 00:00, D+1 00:00)), started at {self.at} on D+1"
        )

    # -- serialization ---------------------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        return {"at": self.at, "timezone": self.timezone}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(at=data["at"], timezone=data["timezone"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalDayTimetable):
            return NotImplemented
        return (self.at, self.timezone) == (other.at, other.timezone)

    def __hash__(self) -> int:
        return hash((self.at, self.timezone))

    @property
    def summary(self) -> str:
        return f"daily {self.at} {self.timezone} (local day)"

    # -- days ------------------------------------------------------------------------------------
    def local_date(self, value: dt.datetime) -> dt.date:
        """The local calendar date of an instant."""
        return pendulum.instance(value).in_timezone(self._tz).date()

    def run_after(self, day: dt.date) -> DateTime:
        """When the run for ``day`` starts: the first instant at or after ``at`` on the next day, local time.

        A repeated wall time (fall-back) gives its first occurrence; one inside a spring-forward gap
        gives the end of the gap (:func:`first_instant`). Always at or after the end of ``day``.
        """
        nxt = day + dt.timedelta(days=1)
        return first_instant(dt.datetime.combine(nxt, self._time), self._tz).in_timezone("UTC")

    def day_info(self, day: dt.date) -> DagRunInfo:
        """The run of local ``day``: its interval, logical date (interval start) and start time."""
        return DagRunInfo(run_after=self.run_after(day), data_interval=day_interval(day, self._tz))

    def _first_day(self, earliest: dt.datetime) -> dt.date:
        named = named_day(earliest, self._tz)
        return named if named is not None else self.local_date(earliest)

    def _last_day(self, latest: dt.datetime) -> dt.date:
        named = named_day(latest, self._tz)
        return named if named is not None else self.local_date(latest)

    # -- Timetable protocol ----------------------------------------------------------------------
    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if last_automated_data_interval is not None:
            # The day after the last one: the local date of the last interval's end. Also right for
            # runs made by the former cron timetable ([D 05:00, D+1 05:00) processed day D).
            day = self.local_date(last_automated_data_interval.end)
            if restriction.earliest is not None:
                day = max(day, self._first_day(restriction.earliest))
        elif restriction.earliest is not None:
            day = self._first_day(restriction.earliest)
        else:
            return None
        if not restriction.catchup:
            # Only the last complete day (the one whose run is due now), never older ones.
            today = self.local_date(pendulum.now("UTC"))
            day = max(day, today - dt.timedelta(days=1))
        if restriction.latest is not None and day > self._last_day(restriction.latest):
            return None
        return self.day_info(day)

    def last_complete_day(self, now: dt.datetime) -> dt.date:
        """The last local day that has ended at ``now`` (the day before ``now``'s local date)."""
        day = self.local_date(now)
        return day - dt.timedelta(days=1)

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        """The day a manual logical date names (:func:`named_day`); "now" gives the last complete day.

        :raises ValueError: the logical date is neither a day's midnight nor the current time (within
            :data:`NOW_TOLERANCE`): it does not say which day, so no day is guessed; the message names
            the instant, the days it falls between and how to name one.
        """
        day = named_day(run_after, self._tz)
        if day is not None:
            return day_interval(day, self._tz)
        instant = pendulum.instance(run_after)
        now = pendulum.now("UTC")
        if now - NOW_TOLERANCE <= instant <= now + NOW_AHEAD:
            return day_interval(self.last_complete_day(instant), self._tz)
        local = instant.in_timezone(self._tz)
        raise ValueError(
            f"the logical date {instant.isoformat()} ({local.isoformat()} in {self.timezone}) names no day: "
            "it is neither a midnight nor the current time, and no day is guessed; "
            + HOW_TO_NAME_A_DAY.format(day=local.date(), tz=self.timezone)
        )

    def generate_run_id(
        self,
        *,
        run_type: Any,
        run_after: DateTime,
        data_interval: DataInterval | None,
        **extra: Any,
    ) -> str:
        from airflow.utils.types import DagRunType

        run_type = DagRunType(run_type)
        if data_interval is None:
            return run_type.generate_run_id(suffix=run_after.isoformat())
        day = self.local_date(data_interval.start).isoformat()
        if run_type in (DagRunType.SCHEDULED, DagRunType.BACKFILL_JOB):
            return run_type.generate_run_id(suffix=day)
        return run_type.generate_run_id(suffix=f"{day}__{pendulum.instance(run_after).isoformat()}")
