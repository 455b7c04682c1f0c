"""CalltouchExtractOperator: one site's calls (or requests) of an interval, stored as Parquet per local day.

Why store before transforming: the raw day is kept (re-transformable, auditable), the upload task
reads it back, and a re-run of the day replaces exactly its own partition (``storage.atomic_write``).
The hook does the HTTP (pages, retries, rate limits, masking); this operator only chooses the days,
calls the hook, converts the records to Arrow and writes the files.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.sdk import BaseOperator

from calltouch_metrika import storage
from calltouch_metrika._utils import as_date

if TYPE_CHECKING:
    from airflow.sdk import Context

PHONE_SALT_VARIABLE = "calltouch_metrika_phone_salt"


def local_interval(context: Mapping[str, Any], tz_name: str) -> tuple[date, date]:
    """The run's local day as ``[day, day + 1)`` in ``tz_name``.

    From the data interval when the run has one (scheduled runs, backfills, ``dags test DATE``,
    manual runs with a logical date), which must be exactly one local day
    (:class:`~calltouch_metrika.timetables.LocalDayTimetable`); a manual run without a logical date
    has no interval and processes the last complete local day before its ``run_after``.

    :raises ValueError: the interval is not exactly one local day (the message names it), or the
        logical date names another day than the interval (``airflow dags trigger -l DAY``).
    """
    import pendulum

    from calltouch_metrika.timetables import interval_day, named_day

    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None:
        day = interval_day(start, end, tz_name)
        logical = context.get("logical_date")
        named = named_day(logical, tz_name) if logical is not None else None
        if named is not None and named != day:
            # `airflow dags trigger -l 2026-11-25` (and TriggerDagRunOperator) infer the interval from
            # the trigger time, not from the logical date the user gave: never process another day.
            raise ValueError(
                f"the logical date {pendulum.instance(logical).isoformat()} names day {named} but the run's "
                f"data interval is day {day} of {tz_name}; Airflow inferred it from the trigger time. "
                f"Run the day with `airflow dags test <dag> {named}`, the UI's Trigger form or the REST API"
            )
        return day, day + timedelta(days=1)
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None) or pendulum.now("UTC")
    day = pendulum.instance(run_after).in_timezone(pendulum.timezone(tz_name)).date() - timedelta(days=1)
    return day, day + timedelta(days=1)


def check_days_ended(last_day: date, tz_name: str, now: datetime | None = None) -> None:
    """Refuse a day that has not ended yet on the pipeline's clock: its data is incomplete.

    :raises AirflowFailException: ``last_day`` ends after ``now``; the message names the day and when it ends.
    """
    import pendulum
    from airflow.sdk.exceptions import AirflowFailException

    from calltouch_metrika.timetables import day_interval

    ends = pendulum.instance(day_interval(last_day, tz_name).end)
    current = pendulum.instance(now) if now is not None else pendulum.now("UTC")
    if ends > current:
        raise AirflowFailException(
            f"day {last_day} has not ended yet in {tz_name}: it ends at "
            f"{ends.in_timezone(pendulum.timezone(tz_name)).isoformat()} ({ends.in_timezone('UTC').isoformat()}); "
            "nothing was extracted or uploaded. Run this day after it has ended (the scheduled run does)."
        )


def _hook_params(params: Any) -> dict[str, Any]:
    """The hook parameters from ``params``: only this task's own entries, not the DAG's Params.

    Airflow merges the DAG's ``params`` (e.g. ``dry_run``) into every operator's ``params`` argument;
    entries whose source is the task are the ones passed to this operator.
    """
    if not params:
        return {}
    get_param = getattr(params, "get_param", None)
    if get_param is None:
        return dict(params)
    out = {}
    for key in params:
        p = get_param(key)
        if getattr(p, "source", "task") == "task":
            out[key] = p.value
    return out


class CalltouchExtractOperator(BaseOperator):
    """Extract Calltouch calls (or requests) of the run's local days to Parquet, one file per day.

    Writes ``{storage_root}/calltouch/{kind}/site={site_id}/date={YYYY-MM-DD}/{kind}.parquet`` and returns
    ``{"path", "paths", "days", "rows", "rows_by_day", "site_id", "kind", "date_from", "date_to"}``
    (``path`` is the first day's file, ``date_to`` is exclusive, as the interval's end).

    :param kind: ``"calls"`` (calls diary) or ``"requests"`` (requests journal).
    :param calltouch_conn_id: the Calltouch connection id. Templated.
    :param site_id: the Calltouch site id.
    :param date_from: first local day (templated; default: the run's data interval, local dates).
    :param date_to: day after the last one (exclusive; templated; default: as ``date_from``).
    :param api_params: hook parameters, snake_case (``target_only=True``, ``with_call_tags=True``...).
    :param params: the same as ``api_params`` (the documented contract); the DAG's own Params
        that Airflow merges in are ignored.
    :param storage_root: path or fsspec URL of the storage root.
    :param hash_phone_numbers: store phone numbers as salted SHA-256 (salt: Airflow Variable
        ``calltouch_metrika_phone_salt``).
    :param timezone: the site's time zone, which defines the local day.
    :param settle_days: the run of local day D extracts D - ``settle_days`` (calls only: manager tags
        and deals settle first); ignored when ``date_from`` is given.
    :param lookback_days: also re-read this many local days before the first one (calls only: late
        calls the counter's ledger does not hold yet), never more than Metrika's 21-day linkage window
        back; ignored when ``date_from`` is given. Each extra day costs ceil(calls / 1000) requests
        (at least 1); the summary says how many the lookback cost.
    """

    template_fields: Sequence[str] = (
        "date_from",
        "date_to",
        "site_id",
        "calltouch_conn_id",
        "storage_root",
        "api_params",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"api_params": "json"}
    ui_color = "#dff0d8"

    def __init__(
        self,
        *,
        kind: Literal["calls", "requests"] = "calls",
        calltouch_conn_id: str = "calltouch_default",
        site_id: int | str,
        date_from: str | date | None = None,
        date_to: str | date | None = None,
        api_params: dict[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        storage_root: str,
        hash_phone_numbers: bool = False,
        timezone: str = "Europe/Moscow",
        settle_days: int = 0,
        lookback_days: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(params=params, **kwargs)
        if settle_days < 0 or lookback_days < 0:
            raise ValueError("settle_days and lookback_days must be >= 0")
        if kind not in ("calls", "requests"):
            raise ValueError(f"kind must be 'calls' or 'requests', got {kind!r}")
        self.kind = kind
        self.calltouch_conn_id = calltouch_conn_id
        self.site_id = site_id
        self.date_from = date_from
        self.date_to = date_to
        self.api_params = dict(api_params) if api_params is not None else _hook_params(params)
        self.storage_root = storage_root
        self.hash_phone_numbers = hash_phone_numbers
        self.timezone = timezone
        self.settle_days = int(settle_days)
        self.lookback_days = int(lookback_days)

    def _lookback(self, first: date) -> list[date]:
        """The lookback days before ``first`` that still lie in Metrika's 21-day linkage window."""
        import pendulum

        if self.kind != "calls" or self.date_from not in (None, ""):
            return []
        tz = pendulum.timezone(self.timezone)
        today = pendulum.now(tz).date()
        oldest = today - timedelta(days=21)
        start = getattr(self, "start_date", None)  # the DAG's start: no lookback before the pipeline began
        if start is not None:
            oldest = max(oldest, pendulum.instance(start).in_timezone(tz).date())
        days = [first - timedelta(days=k) for k in range(self.lookback_days, 0, -1)]
        skipped = [d for d in days if d < oldest]
        if skipped:
            self.log.info(
                "Lookback: %d day(s) before %s skipped (Metrika's 21-day linkage window, the DAG's start)",
                len(skipped),
                oldest,
            )
        return [d for d in days if d >= oldest]

    def _days(self, context: Context) -> list[date]:
        d_from, d_to = local_interval(context, self.timezone)
        if self.kind == "calls" and self.settle_days:
            d_from -= timedelta(days=self.settle_days)
            d_to -= timedelta(days=self.settle_days)
        if self.date_from not in (None, ""):
            d_from = as_date(self.date_from, "date_from")
            d_to = d_from + timedelta(days=1)
        if self.date_to not in (None, ""):
            d_to = as_date(self.date_to, "date_to")
        if d_to <= d_from:
            raise ValueError(f"date_to ({d_to}) must be after date_from ({d_from}); date_to is exclusive")
        check_days_ended(d_to - timedelta(days=1), self.timezone)
        self.log.info(
            "Local day(s) %s..%s of %s (data interval %s -> %s)",
            d_from,
            d_to - timedelta(days=1),
            self.timezone,
            context.get("data_interval_start"),
            context.get("data_interval_end"),
        )
        return [d_from + timedelta(days=i) for i in range((d_to - d_from).days)]

    def _phone_salt(self) -> str:
        from airflow.sdk import Variable
        from airflow.sdk.log import mask_secret

        salt = Variable.get(PHONE_SALT_VARIABLE, default="")
        if salt:
            mask_secret(salt)
        else:
            self.log.warning(
                "hash_phone_numbers is on but the Variable %r is empty: hashes are unsalted and a "
                "phone number can be recovered from its hash by brute force. Set the Variable.",
                PHONE_SALT_VARIABLE,
            )
        return salt

    def _to_table(self, records: list[Any], salt: str, rejects: list[Any]) -> Any:
        """The day's Arrow table. Calls keep every item (a bad one is a reject of the calls transform);
        a request record that cannot be typed is left out and appended to ``rejects``."""
        if self.kind == "calls":
            from calltouch_metrika.transforms.records import calls_to_table

            return calls_to_table(records, hash_phone_numbers=self.hash_phone_numbers, phone_salt=salt)
        from calltouch_metrika.transforms.requests import requests_to_table

        return requests_to_table(records, rejects=rejects)

    def execute(self, context: Context) -> dict[str, Any]:
        """Fetch the local days through the hook and write each day's Parquet partition; return the paths."""
        import pyarrow.parquet as pq

        from calltouch_metrika.hooks.calltouch import CalltouchHook

        site_id = int(self.site_id)
        main_days = self._days(context)
        lookback = self._lookback(main_days[0])
        days = lookback + main_days
        hook = CalltouchHook(self.calltouch_conn_id, site_id=site_id)
        salt = self._phone_salt() if self.hash_phone_numbers and self.kind == "calls" else ""
        # One pass over the whole interval: the hook fetches days concurrently (pages and days in flight
        # together, paced by its limiter) and yields them in order; each day's partition is written as
        # soon as it arrives, so memory holds a few days, not the interval.
        by_day = hook.iter_calls_by_day if self.kind == "calls" else hook.iter_requests_by_day
        paths: list[str] = []
        rows_by_day: dict[str, int] = {}
        rejected: dict[str, int] = {}
        for day, records in by_day(days[0], days[-1], **self.api_params):
            received = len(records)
            day_rejects: list[Any] = []
            table = self._to_table(records, salt, day_rejects)
            del records
            for reject in day_rejects:
                self.log.warning(
                    "Site %s, %s: %s item %d (requestId %s) left out: %s: %s",
                    site_id,
                    day,
                    self.kind,
                    reject.index,
                    reject.request_id,
                    reject.reason,
                    reject.detail,
                )
                rejected[reject.reason] = rejected.get(reject.reason, 0) + 1
            if table.num_rows + len(day_rejects) != received:  # pragma: no cover - a bug, never data
                raise RuntimeError(
                    f"site {site_id}, {day}: {received} {self.kind} received but {table.num_rows} stored "
                    f"+ {len(day_rejects)} rejected"
                )
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            path = storage.extract_path(self.storage_root, self.kind, site_id, day)
            storage.atomic_write_bytes(path, buf.getvalue())
            paths.append(str(path))
            rows_by_day[day.isoformat()] = table.num_rows
            self.log.info("Site %s, %s: %d %s -> %s", site_id, day, table.num_rows, self.kind, path)
        total = sum(rows_by_day.values())
        lookback_requests = sum(max(1, -(-rows_by_day.get(d.isoformat(), 0) // 1000)) for d in lookback)
        if lookback:
            self.log.info(
                "Lookback: %d earlier day(s) %s..%s re-read (%d %s) at a cost of %d request(s)",
                len(lookback),
                lookback[0],
                lookback[-1],
                sum(rows_by_day.get(d.isoformat(), 0) for d in lookback),
                self.kind,
                lookback_requests,
            )
        self.log.info(
            "Extract summary: site %s, %s %s..%s: %d %s in %d file(s)%s%s",
            site_id,
            self.kind,
            days[0],
            days[-1],
            total,
            self.kind,
            len(paths),
            " (phone numbers hashed)" if self.hash_phone_numbers and self.kind == "calls" else "",
            (
                f"; {sum(rejected.values())} record(s) left out (received = stored + left out), by reason: "
                + ", ".join(f"{r}={n}" for r, n in sorted(rejected.items()))
            )
            if rejected
            else "",
        )
        return {
            "path": paths[0],
            "paths": paths,
            "days": [d.isoformat() for d in days],
            "rows": total,
            "rows_by_day": rows_by_day,
            "rejected": sum(rejected.values()),
            "rejects_by_reason": dict(sorted(rejected.items())),
            "site_id": site_id,
            "kind": self.kind,
            "date_from": days[0].isoformat(),
            "date_to": (days[-1] + timedelta(days=1)).isoformat(),
            "main_days": [d.isoformat() for d in main_days],
            "lookback_days": [d.isoformat() for d in lookback],
            "lookback_requests": lookback_requests,
        }
