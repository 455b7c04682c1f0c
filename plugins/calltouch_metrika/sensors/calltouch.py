"""PlansImportStatusSensor: waits until every Calltouch plans import of a task has succeeded.

Why: ``plans-import/add`` only accepts a batch; Calltouch imports it later and may end in ``error``.
The plans DAG is not done until each batch is ``success``, and only then is the batch recorded as
imported in the plans ledger (so a failed import is sent again on the next run).

Deferrable by default (``[operators] default_deferrable``, true when unset): checks once on the worker, then hands the waiting to
:class:`~calltouch_metrika.triggers.calltouch.PlansImportStatusTrigger`. With ``deferrable=False`` it
pokes (or reschedules) through the sync hook with exponentially growing intervals.

``error`` fails the task naming the import ids and the file rows they carried; an import still
``in progress...`` after ``timeout`` seconds fails with :class:`AirflowSensorTimeout` naming the same.
Returns (XCom) ``{"<import_log_id>": "success", ...}`` (string keys: XCom is JSON).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from calltouch_metrika.constants import PLANS_IN_PROGRESS, PLANS_SUCCESS
from calltouch_metrika.sensors._base import DeferrableStatusSensor, default_deferrable
from calltouch_metrika.storage import mark_plans_ledger_succeeded
from calltouch_metrika.triggers.calltouch import PlansImportStatusTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PlansImportStatusSensor"]


def _rows_label(rows: Sequence[int]) -> str:
    if not rows:
        return "no rows"
    if list(rows) == list(range(rows[0], rows[0] + len(rows))):
        return f"row {rows[0]}" if len(rows) == 1 else f"rows {rows[0]}-{rows[-1]}"
    return "rows " + ",".join(map(str, rows))


class PlansImportStatusSensor(DeferrableStatusSensor):
    """Wait for Calltouch plans imports to reach ``success``; fail on ``error`` or timeout.

    :param imports: the :class:`~calltouch_metrika.operators.calltouch_plans.PlansImportOperator`'s XCom
        (pass ``import_task.output``): a list of ``{"import_log_id", "rows", "file", ...}``. Bare ids
        are accepted too. Empty (dry run, nothing changed): succeeds at once with ``{}``.
    :param calltouch_conn_id: the Calltouch connection id. Templated.
    :param site_id: the Calltouch site; default: the entries' ``site_id``, else the connection's extra.
    :param deferrable: wait in the triggerer instead of on a worker; default: Airflow's
        ``[operators] default_deferrable``, true when unset.
    :param poke_interval: seconds before the first re-check; later waits grow up to ``max_poke_interval``.
    :param max_poke_interval: the longest wait between two checks.
    :param timeout: seconds to wait in all (default 6 hours).
    """

    template_fields: Sequence[str] = ("imports", "calltouch_conn_id", "site_id")
    ui_color = "#fcecd4"

    def __init__(
        self,
        *,
        imports: Any,
        calltouch_conn_id: str = "calltouch_default",
        site_id: int | str | None = None,
        deferrable: bool = default_deferrable(),
        poke_interval: float = 5.0,
        max_poke_interval: float = 300.0,
        timeout: float = 6 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            deferrable=deferrable,
            poke_interval=poke_interval,
            max_poke_interval=max_poke_interval,
            timeout=timeout,
            **kwargs,
        )
        self.imports = imports
        self.calltouch_conn_id = calltouch_conn_id
        self.site_id = site_id
        self._statuses: dict[str, str] = {}
        self._recorded: set[int] = set()

    # -- helpers -------------------------------------------------------------------------------
    def _entries(self) -> list[dict[str, Any]]:
        """The imports as dicts with at least ``import_log_id``; bad input is a clear error."""
        raw = self.imports
        if raw in (None, "", "None"):
            return []
        if isinstance(raw, (Mapping, int, str)):
            raw = [raw]
        entries: list[dict[str, Any]] = []
        for item in raw:
            entry = dict(item) if isinstance(item, Mapping) else {"import_log_id": item}
            try:
                entry["import_log_id"] = int(entry["import_log_id"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"not a plans import (an import_log_id or the import task's XCom): {item!r}"
                ) from None
            entries.append(entry)
        return entries

    def _site_id(self, entries: list[dict[str, Any]]) -> int | None:
        if self.site_id not in (None, ""):
            return int(self.site_id)
        for e in entries:
            if e.get("site_id") not in (None, ""):
                return int(e["site_id"])
        return None

    def _hook(self, site_id: int | None) -> Any:
        from calltouch_metrika.hooks.calltouch import CalltouchHook

        return CalltouchHook(self.calltouch_conn_id, site_id=site_id)

    @staticmethod
    def _describe(entries: list[dict[str, Any]], ids: Sequence[int]) -> str:
        """``12 (plan.csv:rows 2-101), 13 (plan.csv:rows 102-201)``."""
        by_id = {e["import_log_id"]: e for e in entries}
        parts = []
        for i in ids:
            e = by_id.get(int(i), {})
            where = f"{e['file']}:{_rows_label(e.get('rows') or [])}" if e.get("file") else "rows unknown"
            parts.append(f"{i} ({where})")
        return ", ".join(parts)

    def _record_success(self, entries: list[dict[str, Any]], ids: Sequence[int]) -> None:
        """Mark each succeeded import's batch as imported in the plans ledger."""
        by_id = {e["import_log_id"]: e for e in entries}
        for i in ids:
            ledger = by_id.get(int(i), {}).get("ledger")
            if ledger and int(i) not in self._recorded:
                mark_plans_ledger_succeeded(ledger, int(i))
                self._recorded.add(int(i))

    def _judge(self, entries: list[dict[str, Any]], statuses: Mapping[str, str]) -> bool:
        """Record successes; raise on failures; True when every import succeeded."""
        succeeded = [int(i) for i, s in statuses.items() if s == PLANS_SUCCESS]
        self._record_success(entries, succeeded)
        failed = [int(i) for i, s in statuses.items() if s not in (PLANS_SUCCESS, PLANS_IN_PROGRESS)]
        if failed:
            got = sorted({statuses[str(i)] for i in failed})
            raise AirflowFailException(
                f"Calltouch reports plans import(s) {self._describe(entries, failed)} as {got}: those rows "
                "were NOT imported. Fix what the Calltouch UI shows for them (or ask your account manager) and "
                "run again; the failed batches are re-sent, the succeeded ones are not."
                + (f" Succeeded: {', '.join(map(str, succeeded))}." if succeeded else "")
            )
        return len(succeeded) == len(statuses)

    # -- poke / reschedule ----------------------------------------------------------------------
    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One status check of every unfinished import through the sync hook."""
        entries = self._entries()
        if not self._statuses:
            self._statuses = {str(e["import_log_id"]): PLANS_IN_PROGRESS for e in entries}
        hook = self._hook(self._site_id(entries))
        for key, status in self._statuses.items():
            if status == PLANS_IN_PROGRESS:
                self._statuses[key] = str((hook.plans_import_status(int(key)) or {}).get("status", ""))
        self.log.info("plans import statuses: %s", self._statuses)
        if self._judge(entries, self._statuses):
            return PokeReturnValue(is_done=True, xcom_value=dict(self._statuses))
        return False

    def execute(self, context: Context) -> Any:
        """Nothing to wait for -> ``{}``; else poke once and defer, or poke/reschedule until done."""
        entries = self._entries()
        if not entries:
            self.log.info("no plans import to wait for (dry run, or every batch already imported)")
            return {}
        ids = [e["import_log_id"] for e in entries]

        def timeout_message(exc: AirflowSensorTimeout) -> str:
            pending = [int(i) for i, s in self._statuses.items() if s == PLANS_IN_PROGRESS] or ids
            return self._timeout_message(entries, pending) + f" ({exc})"

        return self.poke_or_defer(
            context,
            # built after the first poke: only the imports still in progress are watched
            trigger=lambda **polling: PlansImportStatusTrigger(
                calltouch_conn_id=self.calltouch_conn_id,
                site_id=self._site_id(entries),
                import_log_ids=[int(i) for i, s in self._statuses.items() if s == PLANS_IN_PROGRESS],
                **polling,
            ),
            timeout_message=timeout_message,
        )

    def _timeout_message(self, entries: list[dict[str, Any]], pending: Sequence[int]) -> str:
        return (
            f"plans import(s) {self._describe(entries, pending)} still {PLANS_IN_PROGRESS!r} after "
            f"{self.timeout:g} s; Calltouch has not finished them. Nothing is lost: the next run checks "
            "their status before sending anything again (or raise this sensor's timeout)."
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, str]:
        """Resume after the trigger: success -> statuses; failed/timeout/error -> fail naming ids and rows."""
        entries = self._entries()
        statuses = {str(e["import_log_id"]): PLANS_SUCCESS for e in entries}  # the first poke saw the rest
        statuses.update({str(k): str(v) for k, v in (event.get("statuses") or {}).items()})
        status = event.get("status")
        if status in ("success", "failed"):
            self._judge(entries, statuses)  # raises on failures
            return statuses
        if status == "timeout":
            self._record_success(entries, [int(i) for i, s in statuses.items() if s == PLANS_SUCCESS])
            raise AirflowSensorTimeout(self._timeout_message(entries, event.get("pending") or []))
        raise AirflowException(
            f"waiting for plans import(s) {self._describe(entries, [e['import_log_id'] for e in entries])} "
            f"failed: {event.get('message') or event}"
        )
