"""One DAG run per local calendar day: :class:`LocalDayTimetable` (issue 11).

Why not a cron timetable: users name *days* ("send 29 November", "backfill 20 to 22 November"),
and Airflow's cron timetables map those words to intervals that start at the cron time, infer the
interval *before* a manual date, and on daylight-saving days can produce a zero-length interval
(apache/airflow#70089; ../shared/airflow3-notes.md §0 items 13-14). This timetable makes the day
explicit:

* the run for local day ``D`` of the pipeline's time zone has the data interval
  ``[D 00:00, D+1 00:00)`` on that clock (23, 24 or 25 hours long), its logical date is ``D 00:00``
  local, and it starts at ``at`` (e.g. ``05:00``) on ``D+1``, local time, so the day has ended;
* a time of day that does not exist on ``D+1`` (inside a spring-forward gap) is moved forward by the
  gap (02:30 -> 03:30); a time that occurs twice (fall-back) starts the run at its first occurrence;
* :meth:`LocalDayTimetable.generate_run_id` names runs by the day: the scheduler's runs are
  ``scheduled__2026-11-29``, UI/REST manual runs ``manual__2026-11-29__<trigger time>``. Airflow 3.3.2
  does not ask the timetable for backfill runs (``backfill__<run_after>``, models/backfill.py) nor for
  ``dags test`` runs (``manual__<now>``); their data interval and task summaries still name the day.

**Which day a bound or a manual logical date names** (:func:`named_day`): a midnight of the
pipeline's time zone names that day; otherwise a datetime that is exactly midnight on its own
clock (``airflow dags test DAG 2026-11-29`` and ``airflow backfill create --from-date 2026-11-20``
pass ``2026-11-29T00:00:00+00:00``) names its calendar date. Any other instant (the UI's default
"now") names no day: a manual run then processes the **last complete local day** before it, and a
backfill bound is rounded to the day it falls in.

This module is imported while DAG files are parsed and by the scheduler, dag-processor and
api-server through the plugin ``plugins/calltouch_metrika_plugin.py``; it stays light.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction
    from pendulum import DateTime

__all__ = ["LocalDayTimetable", "day_interval", "interval_day", "named_day"]

_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _tz(timezone: Any) -> Any:
    return pendulum.timezone(timezone) if isinstance(timezone, str) else timezone


def day_interval(day: dt.date, timezone: Any) -> DataInterval:
    """The data interval of local ``day``: ``[day 00:00, day+1 00:00)`` in ``timezone``, as UTC datetimes."""
    tz = _tz(timezone)
    start = pendulum.datetime(day.year, day.month, day.day, tz=tz)
    nxt = day + dt.timedelta(days=1)
    end = pendulum.datetime(nxt.year, nxt.month, nxt.day, tz=tz)
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


def named_day(value: dt.datetime, timezone: Any) -> dt.date | None:
    """The local day a bound or a manual logical date names, or None if it is just an instant.

    A midnight of ``timezone`` names that day; else a datetime that is midnight on its own clock
    (``2026-11-29T00:00:00+00:00`` as the CLI passes a bare date) names its calendar date.
    """
    tz = _tz(timezone)
    local = pendulum.instance(value).in_timezone(tz)
    if _is_midnight(local):
        return local.date()
    own = pendulum.instance(value)
    if _is_midnight(own):
        return own.date()
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
        """When the run for ``day`` starts: ``at`` on the next day, local time (first occurrence; after a gap)."""
        nxt = day + dt.timedelta(days=1)
        naive = dt.datetime.combine(nxt, self._time)
        # First occurrence of a repeated wall time (fold=0); a wall time inside a spring-forward gap
        # does not exist, and then the first instant after the gap (fold=1 shifts it forward).
        args = (naive.year, naive.month, naive.day, naive.hour, naive.minute)
        local = pendulum.datetime(*args, tz=self._tz, fold=0)
        if (local.hour, local.minute) != (naive.hour, naive.minute):
            local = pendulum.datetime(*args, tz=self._tz, fold=1)
        return local.in_timezone("UTC")

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

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        """The day a manual logical date names; for a plain instant ("now"), the last complete local day."""
        day = named_day(run_after, self._tz)
        if day is None:
            day = self.local_date(run_after) - dt.timedelta(days=1)
        return day_interval(day, self._tz)

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
