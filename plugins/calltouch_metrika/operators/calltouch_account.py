"""CalltouchAccountExtractOperator: every site of one Calltouch account for a local day, in one task.

Why (issue 15): an agency has tens to hundreds of small sites; one extract task per site and day spends
~1.7 s starting up for one request of ~1 s, so the 5 requests/s a Calltouch IP allows stay mostly unused.
One task per account and day fetches all of the account's sites concurrently, every request paced by the
process-wide (or shared, :mod:`calltouch_metrika.hooks._shared_ratelimit`) limiter, and writes each
site's files exactly as its pipeline's own extract would. It then writes one summary per pipeline
(``storage.account_manifest_path``); each pipeline keeps its own DAG, pause switch, backfills and
uploads, and its ``extract`` task returns that summary instead of calling Calltouch
(:class:`~calltouch_metrika.operators.calltouch.CalltouchExtractOperator` with ``account``).

One site's failure does not take the others down: every other site's files and summary are written,
then the task fails naming the failed pipelines (their own ``extract`` tasks fetch them after waiting,
or the retry of this task does).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from calltouch_metrika import storage
from calltouch_metrika._utils import as_date
from calltouch_metrika.constants import CALLS_DAG_PREFIX
from calltouch_metrika.operators.calltouch import (
    check_days_ended,
    day_requests,
    extract_settings,
    extract_site,
    local_interval,
    lookback_before,
    phone_salt,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The keys of one entry of ``sites`` (the pipeline's own extract settings).
SITE_KEYS = frozenset(
    {
        "pipeline",
        "site_id",
        "filters",
        "storage_root",
        "hash_phone_numbers",
        "settle_days",
        "lookback_days",
        "start_date",
    }
)


class CalltouchAccountExtractOperator(BaseOperator):
    """Extract the calls of the run's local day for every site of one Calltouch account, concurrently.

    For each entry of ``sites`` it fetches what that pipeline's own extract would (its day shifted by
    ``settle_days``, its ``lookback_days``, its ``filters``, phone hashing), writes the same Parquet
    files (``storage.calls_path``), and then the pipeline's summary (the extract XCom shape plus
    ``account``, ``account_run_id``, ``written_at``) to ``storage.account_manifest_path``. Returns
    ``{"account", "day", "sites": {pipeline: {"rows", "requests", "site_id", "days"}}, "failed": {pipeline:
    error}, "skipped": {pipeline: why}}``. Pipelines whose DAG is paused are skipped; pipelines with
    identical settings (site, root, filters...) share one fetch.

    :param account: the account's name (config key ``account``).
    :param calltouch_conn_id: the account's Calltouch connection (its token reads every site). Templated.
    :param timezone: the account's time zone: the run's local day (every pipeline of the account shares it).
    :param sites: one mapping per pipeline: ``pipeline``, ``site_id``, ``filters`` (hook parameters,
        snake_case), ``storage_root``, ``hash_phone_numbers``, ``settle_days``, ``lookback_days``,
        ``start_date`` (ISO date: no lookback before it).
    :param max_sites_in_flight: sites fetched at once (each also has its pages and days in flight); the
        limiter, not this, keeps the rate at Calltouch's 5 requests/s.
    :raises AirflowException: after every site was tried, naming the pipelines whose site failed.
    """

    template_fields: Sequence[str] = ("calltouch_conn_id",)
    ui_color = "#c9e4c5"

    def __init__(
        self,
        *,
        account: str,
        calltouch_conn_id: str = "calltouch_default",
        timezone: str = "Europe/Moscow",
        sites: Sequence[Mapping[str, Any]],
        max_sites_in_flight: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not sites:
            raise ValueError(f"account {account!r} has no sites")
        for entry in sites:
            unknown = set(entry) - SITE_KEYS
            missing = {"pipeline", "site_id", "storage_root"} - set(entry)
            if unknown or missing:
                raise ValueError(
                    f"account {account!r}: site entry {dict(entry)!r}: unknown keys {sorted(unknown)}, "
                    f"missing keys {sorted(missing)}"
                )
        if max_sites_in_flight < 1:
            raise ValueError("max_sites_in_flight must be >= 1")
        self.account = account
        self.calltouch_conn_id = calltouch_conn_id
        self.timezone = timezone
        self.sites = [dict(entry) for entry in sites]
        self.max_sites_in_flight = max_sites_in_flight

    def _plan(self, day: date, entry: Mapping[str, Any]) -> tuple[list[date], list[date]]:
        """``(main days, lookback days)`` of one pipeline for the run's local ``day``."""
        main = day - timedelta(days=int(entry.get("settle_days") or 0))
        start = entry.get("start_date")
        start_dt = None
        if start:
            import pendulum

            first = as_date(start, "start_date")
            start_dt = pendulum.datetime(first.year, first.month, first.day, tz=self.timezone)
        lookback = lookback_before(
            main, int(entry.get("lookback_days") or 0), self.timezone, start_dt, self.log
        )
        return [main], lookback

    @staticmethod
    def _settings(entry: Mapping[str, Any]) -> dict[str, Any]:
        return extract_settings(
            site_id=int(entry["site_id"]),
            filters=entry.get("filters") or {},
            hash_phone_numbers=bool(entry.get("hash_phone_numbers")),
            settle_days=int(entry.get("settle_days") or 0),
            lookback_days=int(entry.get("lookback_days") or 0),
            storage_root=str(entry["storage_root"]),
        )

    def _members(self, context: Context, day: date) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The entries to fetch for ``day`` and ``{pipeline: why not}`` for the others: a pipeline whose DAG
        is paused. A day before a pipeline's ``start_date`` is fetched all the same: Airflow backfills
        such days too (the account itself starts at its earliest pipeline's ``start_date``)."""
        ti = context.get("ti")
        todo: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        for entry in self.sites:
            try:
                paused = bool(ti.get_dag(f"{CALLS_DAG_PREFIX}{entry['pipeline']}").is_paused)  # type: ignore[union-attr]
            except Exception:  # unknown to Airflow (e.g. under dag.test of this DAG alone): fetch it
                paused = False
            if paused:
                skipped[entry["pipeline"]] = "its DAG is paused"
                continue
            todo.append(entry)
        return todo, skipped

    def execute(self, context: Context) -> dict[str, Any]:
        """Fetch every site (``max_sites_in_flight`` at once), write each pipeline's files and summary."""
        from airflow.exceptions import AirflowException

        from calltouch_metrika.hooks.calltouch import CalltouchHook

        day, _ = local_interval(context, self.timezone)
        check_days_ended(day, self.timezone)
        run_id = str(getattr(context.get("dag_run"), "run_id", "") or "")
        members, skipped = self._members(context, day)
        for pipeline, why in skipped.items():
            self.log.info("Account %r, %s: pipeline %r not fetched: %s", self.account, day, pipeline, why)
        # Pipelines with the same settings (one site, root, filters...) share one fetch.
        groups: dict[str, list[dict[str, Any]]] = {}
        for entry in members:
            groups.setdefault(repr(sorted(self._settings(entry).items())), []).append(entry)
        salt = phone_salt(self.log) if any(e.get("hash_phone_numbers") for e in members) else ""
        # Hooks are set up here, in the task's main thread: reading the connection goes through the
        # task's supervisor channel; the worker threads below only make HTTP requests.
        hooks = {}
        for entries in groups.values():
            hook = CalltouchHook(self.calltouch_conn_id, site_id=int(entries[0]["site_id"]))
            _ = hook.site_id  # reads the connection, checks the token
            hooks[entries[0]["pipeline"]] = hook
        self.log.info(
            "Account %r, local day %s of %s: %d site(s) for %d pipeline(s), %d at once: %s",
            self.account,
            day,
            self.timezone,
            len(groups),
            len(members),
            min(self.max_sites_in_flight, max(1, len(groups))),
            ", ".join(f"{e['pipeline']} (site {e['site_id']})" for e in members),
        )

        def one(entries: list[dict[str, Any]]) -> dict[str, Any]:
            entry = entries[0]
            main_days, lookback = self._plan(day, entry)
            summary = extract_site(
                hooks[entry["pipeline"]],
                kind="calls",
                site_id=int(entry["site_id"]),
                main_days=main_days,
                lookback=lookback,
                api_params=dict(entry.get("filters") or {}),
                storage_root=str(entry["storage_root"]),
                hash_phone_numbers=bool(entry.get("hash_phone_numbers")),
                salt=salt,
                log=self.log,
            )
            for member in entries:
                manifest = {
                    **summary,
                    "pipeline": member["pipeline"],
                    "account": self.account,
                    "account_run_id": run_id,
                    "written_at": storage.utc_now_iso(),
                    "settings": self._settings(member),
                }
                path = storage.account_manifest_path(
                    str(member["storage_root"]), self.account, main_days[0], str(member["pipeline"])
                )
                storage.write_json(path, manifest)
            return summary

        done: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        workers = min(self.max_sites_in_flight, max(1, len(groups)))
        requests = 0
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="account-site") as pool:
            futures = {pool.submit(one, entries): entries for entries in groups.values()}
            for future in concurrent.futures.as_completed(futures):
                entries = futures[future]
                try:
                    summary = future.result()
                except Exception as exc:  # one site's failure must not lose the others' work
                    for entry in entries:
                        failed[entry["pipeline"]] = f"{type(exc).__name__}: {exc}"
                        self.log.error(
                            "Account %r: pipeline %r (site %s) failed: %s: %s",
                            self.account,
                            entry["pipeline"],
                            entry["site_id"],
                            type(exc).__name__,
                            exc,
                        )
                    continue
                fetched = sum(day_requests(n) for n in summary["rows_by_day"].values())
                requests += fetched
                for i, entry in enumerate(entries):
                    done[entry["pipeline"]] = {
                        "site_id": int(entry["site_id"]),
                        "rows": summary["rows"],
                        "days": len(summary["days"]),
                        "requests": fetched if i == 0 else 0,
                    }
        self.log.info(
            "Account %r, %s: %d site(s) extracted (%d calls, about %d Calltouch request(s)), %d failed%s",
            self.account,
            day,
            len(done),
            sum(s["rows"] for s in done.values()),
            requests,
            len(failed),
            (": " + ", ".join(sorted(failed))) if failed else "",
        )
        if failed:
            raise AirflowException(
                f"account {self.account!r}, {day}: {len(failed)} of {len(self.sites)} site(s) failed "
                f"(the others' files are written): "
                + "; ".join(f"pipeline {p!r}: {e}" for p, e in sorted(failed.items()))
            )
        return {
            "account": self.account,
            "day": day.isoformat(),
            "sites": done,
            "failed": failed,
            "skipped": skipped,
        }
