"""CalltouchExtractOperator: one site's calls (or requests) of an interval, stored as Parquet per local day.

Why store before transforming: the raw day is kept (re-transformable, auditable), the upload task
reads it back, and a re-run of the day replaces exactly its own partition (``storage.atomic_write``).
The hook does the HTTP (pages, retries, rate limits, masking); this operator only chooses the days,
calls the hook, converts the records to Arrow and writes the files.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.sdk import BaseOperator

from calltouch_metrika import storage
from calltouch_metrika._utils import as_bool, as_date
from calltouch_metrika.constants import account_dag_id

if TYPE_CHECKING:
    from airflow.sdk import Context

PHONE_SALT_VARIABLE = "calltouch_metrika_phone_salt"
#: While an extract waits for its account's summary, how often (seconds) it comes back from the
#: triggerer to check that the account's run may still come (a failed run or a paused DAG: fetch now).
ACCOUNT_RECHECK_SECONDS = 120


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


def lookback_before(
    first: date, lookback_days: int, tz_name: str, start: datetime | None, log: Any
) -> list[date]:
    """The ``lookback_days`` local days before ``first`` that still lie in Metrika's 21-day linkage window
    and not before ``start`` (the DAG's start: no lookback before the pipeline began), oldest first."""
    import pendulum

    tz = pendulum.timezone(tz_name)
    oldest = pendulum.now(tz).date() - timedelta(days=21)
    if start is not None:
        oldest = max(oldest, pendulum.instance(start).in_timezone(tz).date())
    days = [first - timedelta(days=k) for k in range(lookback_days, 0, -1)]
    skipped = [d for d in days if d < oldest]
    if skipped:
        log.info(
            "Lookback: %d day(s) before %s skipped (Metrika's 21-day linkage window, the DAG's start)",
            len(skipped),
            oldest,
        )
    return [d for d in days if d >= oldest]


def day_requests(rows: int) -> int:
    """Calltouch requests one day of ``rows`` calls costs: one per page of ``PAGE_SIZE`` (1000), at least one."""
    from calltouch_metrika.hooks.calltouch import PAGE_SIZE

    return max(1, -(-int(rows) // PAGE_SIZE))


def extract_settings(
    *,
    site_id: int,
    filters: Mapping[str, Any],
    hash_phone_numbers: bool,
    settle_days: int,
    lookback_days: int,
    storage_root: str,
) -> dict[str, Any]:
    """What decides a site's extracted files: the account extract records it in each pipeline's summary,
    and the pipeline uses the summary only when its own settings are the same (a changed ``site_id``,
    filter or phone hashing since the account's run means the files are not what it would fetch)."""
    import json

    return {
        "site_id": int(site_id),
        "filters": json.loads(json.dumps(dict(filters), sort_keys=True, default=str)),
        "hash_phone_numbers": bool(hash_phone_numbers),
        "settle_days": int(settle_days),
        "lookback_days": int(lookback_days),
        "storage_root": str(storage_root),
    }


def phone_salt(log: Any) -> str:
    """The salt of hashed phone numbers (Airflow Variable ``calltouch_metrika_phone_salt``), masked;
    ``""`` with a warning when the Variable is empty."""
    from airflow.sdk import Variable
    from airflow.sdk.log import mask_secret

    salt = Variable.get(PHONE_SALT_VARIABLE, default="")
    if salt:
        mask_secret(salt)
    else:
        log.warning(
            "hash_phone_numbers is on but the Variable %r is empty: hashes are unsalted and a "
            "phone number can be recovered from its hash by brute force. Set the Variable.",
            PHONE_SALT_VARIABLE,
        )
    return salt


def _to_table(
    kind: str, records: list[Any], *, hash_phone_numbers: bool, salt: str, rejects: list[Any]
) -> Any:
    """The day's Arrow table. Calls keep every item (a bad one is a reject of the calls transform);
    a request record that cannot be typed is left out and appended to ``rejects``."""
    if kind == "calls":
        from calltouch_metrika.transforms.records import calls_to_table

        return calls_to_table(records, hash_phone_numbers=hash_phone_numbers, phone_salt=salt)
    from calltouch_metrika.transforms.requests import requests_to_table

    return requests_to_table(records, rejects=rejects)


def extract_site(
    hook: Any,
    *,
    kind: str,
    site_id: int,
    main_days: list[date],
    lookback: list[date],
    api_params: Mapping[str, Any],
    storage_root: str,
    hash_phone_numbers: bool,
    salt: str,
    log: Any,
) -> dict[str, Any]:
    """Fetch ``lookback + main_days`` of one site through ``hook`` and write each day's Parquet partition.

    Shared by :class:`CalltouchExtractOperator` (one site per task) and
    :class:`~calltouch_metrika.operators.calltouch_account.CalltouchAccountExtractOperator` (every site of
    an account in one task). Returns the summary the upload reads (the extract task's XCom, see
    :class:`CalltouchExtractOperator`); logs each day, the rejects and the reconciliation.

    :raises RuntimeError: received records do not reconcile with stored + left out (a bug, never data).
    """
    import pyarrow.parquet as pq

    days = lookback + main_days
    # One pass over the whole interval: the hook fetches days concurrently (pages and days in flight
    # together, paced by its limiter) and yields them in order; each day's partition is written as
    # soon as it arrives, so memory holds a few days, not the interval.
    by_day = hook.iter_calls_by_day if kind == "calls" else hook.iter_requests_by_day
    paths: list[str] = []
    rows_by_day: dict[str, int] = {}
    rejected: dict[str, int] = {}
    for day, records in by_day(days[0], days[-1], **api_params):
        received = len(records)
        day_rejects: list[Any] = []
        table = _to_table(
            kind, records, hash_phone_numbers=hash_phone_numbers, salt=salt, rejects=day_rejects
        )
        del records
        for reject in day_rejects:
            log.warning(
                "Site %s, %s: %s item %d (requestId %s) left out: %s: %s",
                site_id,
                day,
                kind,
                reject.index,
                reject.request_id,
                reject.reason,
                reject.detail,
            )
            rejected[reject.reason] = rejected.get(reject.reason, 0) + 1
        if table.num_rows + len(day_rejects) != received:  # pragma: no cover - a bug, never data
            raise RuntimeError(
                f"site {site_id}, {day}: {received} {kind} received but {table.num_rows} stored "
                f"+ {len(day_rejects)} rejected"
            )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        path = storage.extract_path(storage_root, kind, site_id, day)  # type: ignore[arg-type]
        storage.atomic_write_bytes(path, buf.getvalue())
        paths.append(str(path))
        rows_by_day[day.isoformat()] = table.num_rows
        log.info("Site %s, %s: %d %s -> %s", site_id, day, table.num_rows, kind, path)
    total = sum(rows_by_day.values())
    lookback_requests = sum(day_requests(rows_by_day.get(d.isoformat(), 0)) for d in lookback)
    if lookback:
        log.info(
            "Lookback: %d earlier day(s) %s..%s re-read (%d %s) at a cost of %d request(s)",
            len(lookback),
            lookback[0],
            lookback[-1],
            sum(rows_by_day.get(d.isoformat(), 0) for d in lookback),
            kind,
            lookback_requests,
        )
    log.info(
        "Extract summary: site %s, %s %s..%s: %d %s in %d file(s)%s%s",
        site_id,
        kind,
        days[0],
        days[-1],
        total,
        kind,
        len(paths),
        " (phone numbers hashed)" if hash_phone_numbers and kind == "calls" else "",
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
        "kind": kind,
        "date_from": days[0].isoformat(),
        "date_to": (days[-1] + timedelta(days=1)).isoformat(),
        "main_days": [d.isoformat() for d in main_days],
        "lookback_days": [d.isoformat() for d in lookback],
        "lookback_requests": lookback_requests,
    }


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
    :param pipeline: the pipeline this task belongs to (names its account extract summary).
    :param account: the pipeline's Calltouch account (config key ``account``): its site is fetched by the
        account extract (DAG ``calltouch_account_extract__<account>``, every site of the account in one
        task per day). This task then returns the summary that extract wrote for its day, waiting for it
        (deferred, no worker slot) up to ``account_wait`` seconds; when none comes (the account DAG
        paused, or its run of the day finished without this site) it fetches the site itself, as
        without ``account``. A run with Param ``refetch`` true always fetches itself.
    :param account_wait: seconds to wait for the account extract (0: do not wait).
    :param account_poll_interval: seconds between the first checks for it (growing x1.5, up to 60 s).
    :param deferrable: wait for the account extract in the triggerer (default); False: fetch at once
        when its summary is not there yet.
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
        pipeline: str | None = None,
        account: str | None = None,
        account_wait: float = 3600.0,
        account_poll_interval: float = 10.0,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(params=params, **kwargs)
        if account and not pipeline:
            raise ValueError("account needs pipeline (the account extract writes one summary per pipeline)")
        if account and kind != "calls":
            raise ValueError("account extracts read the calls diary only (kind='calls')")
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
        self.pipeline = pipeline
        self.account = account
        self.account_wait = float(account_wait)
        self.account_poll_interval = float(account_poll_interval)
        if deferrable is None:
            from calltouch_metrika._utils import default_deferrable

            deferrable = default_deferrable()
        self.deferrable = deferrable

    def _lookback(self, first: date) -> list[date]:
        """The lookback days before ``first`` (calls only; none when ``date_from`` is given)."""
        if self.kind != "calls" or self.date_from not in (None, ""):
            return []
        return lookback_before(
            first, self.lookback_days, self.timezone, getattr(self, "start_date", None), self.log
        )

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

    def execute(self, context: Context) -> dict[str, Any]:
        """Fetch the local days through the hook and write each day's Parquet partition; return the paths.

        With ``account``: the summary the account extract wrote for this run's day, waiting for it
        (deferred) up to ``account_wait`` seconds, then fetching the site itself.
        """
        main_days = self._days(context)
        if self.account:
            found = self._account_summary(context, main_days)
            if found is not None:
                return found
            if self.deferrable and self._account_may_come(context, main_days[0]):
                self._defer_for_account(main_days[0], time.time() + self.account_wait)
        return self._fetch(main_days)

    def _fetch(self, main_days: list[date]) -> dict[str, Any]:
        from calltouch_metrika.hooks.calltouch import CalltouchHook

        site_id = int(self.site_id)
        lookback = self._lookback(main_days[0])
        hook = CalltouchHook(self.calltouch_conn_id, site_id=site_id)
        salt = phone_salt(self.log) if self.hash_phone_numbers and self.kind == "calls" else ""
        return extract_site(
            hook,
            kind=self.kind,
            site_id=site_id,
            main_days=main_days,
            lookback=lookback,
            api_params=self.api_params,
            storage_root=self.storage_root,
            hash_phone_numbers=self.hash_phone_numbers,
            salt=salt,
            log=self.log,
        )

    # -- account mode -----------------------------------------------------------------------------------

    def _manifest(self, day: date) -> Any:
        return storage.account_manifest_path(self.storage_root, str(self.account), day, str(self.pipeline))

    def _account_summary(self, context: Context, main_days: list[date]) -> dict[str, Any] | None:
        """The account extract's summary for this run's day, if it is there and may be used."""
        params = context.get("params") or {}
        if as_bool(params.get("refetch", False)):
            self.log.info(
                "refetch is on: this run fetches site %s itself, not from the account extract", self.site_id
            )
            return None
        if len(main_days) != 1:
            return None  # an explicit multi-day range (date_from/date_to) is always fetched here
        summary = storage.read_json(self._manifest(main_days[0]))
        if summary is None:
            return None
        mine = extract_settings(
            site_id=int(self.site_id),
            filters=self.api_params,
            hash_phone_numbers=self.hash_phone_numbers,
            settle_days=self.settle_days,
            lookback_days=self.lookback_days,
            storage_root=str(self.storage_root),
        )
        if summary.get("settings") != mine:
            self.log.warning(
                "The extract of account %r for %s was made with other settings (%s) than this pipeline's "
                "(%s), e.g. before a config change: fetching site %s here",
                self.account,
                main_days[0],
                summary.get("settings"),
                mine,
                self.site_id,
            )
            return None
        self.log.info(
            "Calls of site %s for %s from the extract of account %r (run %s, written %s): %d calls in %d file(s); "
            "no Calltouch request made here. Trigger with refetch=true to fetch the site again.",
            self.site_id,
            main_days[0],
            self.account,
            summary.get("account_run_id"),
            summary.get("written_at"),
            summary.get("rows", 0),
            len(summary.get("paths", [])),
        )
        return {
            k: v
            for k, v in summary.items()
            if k not in ("account_run_id", "written_at", "pipeline", "account", "settings")
        }

    def _account_may_come(self, context: Context, main_day: date) -> bool:
        """Whether the account extract of this run's day may still come, so waiting for it makes sense.

        It may when the account DAG has a queued or running run for the day (scheduled or backfill), or
        has none yet but is not paused and its scheduler has not passed the day (its next run is at or
        before it). It will not when the account's run of the day has finished (a failed site), the
        account DAG is paused or unknown, or Airflow cannot tell (then the site is fetched here).
        """
        if self.account_wait <= 0:
            return False
        run_day = main_day + timedelta(days=self.settle_days)  # the account's run of D writes D - settle
        dag_id = account_dag_id(str(self.account))
        import pendulum

        ti = context.get("ti")
        names = [
            pendulum.datetime(run_day.year, run_day.month, run_day.day, tz=self.timezone).in_timezone("UTC"),
            pendulum.datetime(run_day.year, run_day.month, run_day.day, tz="UTC"),
        ]
        try:
            dag = ti.get_dag(dag_id)  # type: ignore[union-attr]
            active = (
                0
                if dag.is_paused
                else ti.get_dr_count(dag_id, logical_dates=names, states=["queued", "running"])
            )  # type: ignore[union-attr]
            finished = (
                0
                if active or dag.is_paused
                else ti.get_dr_count(dag_id, logical_dates=names, states=["success", "failed"])
            )  # type: ignore[union-attr]
        except Exception as exc:  # Airflow cannot tell: do not wait for what may never come
            self.log.warning(
                "Cannot tell whether %s will run day %s (%s): fetching site %s here",
                dag_id,
                run_day,
                exc,
                self.site_id,
            )
            return False
        if dag.is_paused:
            self.log.warning("%s is paused: fetching site %s of day %s here", dag_id, self.site_id, run_day)
            return False
        if active:
            return True
        if finished:
            self.log.warning(
                "%s's run of day %s has finished, and its files of site %s are not there or not usable "
                "(the site failed there, or this pipeline's settings changed since): fetching site %s here",
                dag_id,
                run_day,
                self.site_id,
                self.site_id,
            )
            return False
        nxt = dag.next_dagrun
        if nxt is not None and pendulum.instance(nxt) <= names[0]:
            return True
        self.log.info(
            "%s has no run of day %s and will not create one (its next run: %s): fetching site %s here",
            dag_id,
            run_day,
            nxt,
            self.site_id,
        )
        return False

    def _defer_for_account(self, day: date, wait_until: float) -> None:
        """Wait in the triggerer for the summary, at most :data:`ACCOUNT_RECHECK_SECONDS` at a time: then
        the task comes back to check again whether the account's run may still come (it may have failed,
        or its DAG been paused, meanwhile), and waits on or fetches; never past ``wait_until``."""
        from calltouch_metrika.triggers.calltouch import StorageFileTrigger

        path = self._manifest(day)
        self.log.info(
            "Waiting (deferred) until %s for the extract of account %r of %s (DAG %s), checking again every "
            "%d s whether it may still come; after that this task fetches site %s itself",
            time.strftime("%H:%M:%S UTC", time.gmtime(wait_until)),
            self.account,
            day,
            account_dag_id(str(self.account)),
            ACCOUNT_RECHECK_SECONDS,
            self.site_id,
        )
        deadline = min(wait_until, time.time() + ACCOUNT_RECHECK_SECONDS)
        self.defer(
            trigger=StorageFileTrigger(
                path=str(path),
                poll_interval=self.account_poll_interval,
                max_poll_interval=max(self.account_poll_interval, 30.0),
                deadline=deadline,
            ),
            method_name="execute_complete",
            kwargs={"wait_until": wait_until},
            timeout=timedelta(seconds=deadline - time.time() + 300),
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, wait_until: float | None = None
    ) -> dict[str, Any]:
        """Back from waiting for the account extract: its summary; else wait on while it may still come
        (and ``wait_until`` has not passed), or fetch the site here."""
        main_days = self._days(context)
        status = (event or {}).get("status")
        found = self._account_summary(context, main_days) if status == "found" else None
        if found is not None:
            return found
        if status == "timeout" and wait_until is not None and time.time() < wait_until:
            if self._account_may_come(context, main_days[0]):
                self._defer_for_account(main_days[0], wait_until)
            return self._fetch(main_days)
        self.log.warning(
            "The extract of account %r of %s did not come (%s): fetching site %s here (DAG %s may be paused, "
            "failing, or not have run this day)",
            self.account,
            main_days[0],
            (event or {}).get("message") or status,
            self.site_id,
            account_dag_id(str(self.account)),
        )
        return self._fetch(main_days)
