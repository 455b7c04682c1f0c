"""Calltouch triggers: PlansImportStatusTrigger waits until plans imports are finished; StorageFileTrigger
waits for a file on the storage root (an account extract's summary, see its class).

PlansImportStatusTrigger:

Calltouch answers ``plans-import/add`` with an ``importLogId`` at once and imports later; the status
(``plans-import/{id}/status``) is ``in progress...`` (literally, with the dots), then ``success`` or
``error`` (seed 001). One trigger watches every import of one task (one per batch of 100 rows).

Contract (docs/design.md "Triggers"): only primitives in (conn id, site id, ids, intervals, deadline as
epoch seconds), polls with growing intervals, stops on permanent errors, idempotent on restart (it only
reads statuses; ``deadline`` is absolute, so a restart does not extend the wait).

Events (exactly one, then the trigger returns):

* ``{"status": "success", "statuses": {"<id>": "success", ...}}`` once every import succeeded;
* ``{"status": "failed", "statuses": {...}, "failed": [ids], "pending": [ids], "message"}`` after a
  round of polls in which Calltouch reported ``error`` (or an unknown status) for some import; every
  unfinished import is polled in each round, so all failures known at that moment are named;
* ``{"status": "timeout", "statuses": {...}, "pending": [ids], "message"}`` at the deadline;
* ``{"status": "error", "statuses": {...}, "message"}`` on a permanent API error (bad token, unknown
  import) or after ``max_consecutive_errors`` transient failures in a row.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from calltouch_metrika.constants import PLANS_IN_PROGRESS, PLANS_SUCCESS
from calltouch_metrika.triggers._polling import PollingTrigger

__all__ = ["PlansImportStatusTrigger", "StorageFileTrigger"]


class PlansImportStatusTrigger(PollingTrigger):
    """Poll ``plans-import/{id}/status`` for every id until all succeed, one fails, or the deadline passes.

    :param calltouch_conn_id: the Calltouch connection id.
    :param site_id: the Calltouch site (``SiteId`` header); None: the connection's extra ``site_id``.
    :param import_log_ids: the imports to watch.
    :param poll_interval: seconds before the first poll; each next wait is ``backoff`` times longer.
    :param max_poll_interval: the longest wait between two polls.
    :param deadline: epoch seconds after which the trigger reports ``timeout`` (None: wait forever).
    :param backoff: growth factor of the wait between polls.
    :param max_consecutive_errors: transient errors in a row tolerated before giving up.
    """

    def __init__(
        self,
        *,
        calltouch_conn_id: str,
        site_id: int | None,
        import_log_ids: list[int],
        poll_interval: float = 5.0,
        max_poll_interval: float = 300.0,
        deadline: float | None = None,
        backoff: float = 1.5,
        max_consecutive_errors: int = 10,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            deadline=deadline,
            backoff=backoff,
            max_consecutive_errors=max_consecutive_errors,
        )
        self.calltouch_conn_id = calltouch_conn_id
        self.site_id = None if site_id is None else int(site_id)
        self.import_log_ids = [int(i) for i in import_log_ids]

    def target_kwargs(self) -> dict[str, Any]:
        """The connection, site and imports watched."""
        return {
            "calltouch_conn_id": self.calltouch_conn_id,
            "site_id": self.site_id,
            "import_log_ids": list(self.import_log_ids),
        }

    def _get_async_hook(self) -> Any:
        """The async Calltouch hook (built inside the triggerer's event loop)."""
        from calltouch_metrika.hooks.calltouch import CalltouchAsyncHook

        return CalltouchAsyncHook(self.calltouch_conn_id, site_id=self.site_id)

    def _where(self) -> str:
        return (
            f"site {self.site_id}" if self.site_id is not None else f"connection {self.calltouch_conn_id!r}"
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep, poll every unfinished import, repeat; yield exactly one event, then return."""
        hook = self._get_async_hook()
        statuses: dict[str, str] = {str(i): PLANS_IN_PROGRESS for i in self.import_log_ids}
        waits = self.intervals()
        errors = self.error_policy(f"plans import status on {self._where()}")
        while True:
            await self.wait(waits)  # first too: the sensor has just polled
            try:
                for import_log_id in self.import_log_ids:
                    if statuses[str(import_log_id)] != PLANS_IN_PROGRESS:
                        continue
                    data = await hook.plans_import_status(import_log_id)
                    statuses[str(import_log_id)] = str((data or {}).get("status", ""))
                errors.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if give_up := errors.failed(exc):
                    yield TriggerEvent({"status": "error", "statuses": statuses, "message": give_up.message})
                    return
            else:
                self.log.info("plans imports on %s: %s", self._where(), statuses)
            failed = [int(i) for i, s in statuses.items() if s not in (PLANS_SUCCESS, PLANS_IN_PROGRESS)]
            pending = [int(i) for i, s in statuses.items() if s == PLANS_IN_PROGRESS]
            if failed:
                yield TriggerEvent(
                    {
                        "status": "failed",
                        "statuses": statuses,
                        "failed": failed,
                        "pending": pending,
                        "message": f"Calltouch reports import(s) {', '.join(map(str, failed))} on "
                        f"{self._where()} as {sorted({statuses[str(i)] for i in failed})}",
                    }
                )
                return
            if not pending:
                yield TriggerEvent({"status": "success", "statuses": statuses})
                return
            if self.deadline_passed():
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "statuses": statuses,
                        "pending": pending,
                        "failed": failed,
                        "message": f"import(s) {', '.join(map(str, pending))} on {self._where()} still "
                        f"{PLANS_IN_PROGRESS!r} at the deadline",
                    }
                )
                return


class StorageFileTrigger(PollingTrigger):
    """Wait until a file exists on the storage root (any fsspec URL), e.g. an account extract's summary.

    Why our own: Airflow's ``FileTrigger`` (providers-standard) watches the local filesystem only; the
    storage root may be object storage (``s3://conn@bucket/...``), read through ``ObjectStoragePath``.

    Events (exactly one): ``{"status": "found", "path"}``; ``{"status": "timeout", "path", "message"}`` at
    the deadline; ``{"status": "error", "path", "message"}`` after ``max_consecutive_errors`` failed
    checks in a row. Sleeps before the first check (the task checked just before deferring).

    :param path: the file's URL (``file:///...``, ``s3://...``) as :class:`ObjectStoragePath` takes it.
    :param poll_interval: seconds before the first check; each next wait is ``backoff`` times longer.
    :param max_poll_interval: the longest wait between two checks.
    :param deadline: epoch seconds after which the trigger reports ``timeout`` (None: wait forever).
    """

    def __init__(
        self,
        *,
        path: str,
        poll_interval: float = 10.0,
        max_poll_interval: float = 60.0,
        deadline: float | None = None,
        backoff: float = 1.5,
        max_consecutive_errors: int = 10,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            deadline=deadline,
            backoff=backoff,
            max_consecutive_errors=max_consecutive_errors,
        )
        self.path = str(path)

    def target_kwargs(self) -> dict[str, Any]:
        """The file watched."""
        return {"path": self.path}

    def _exists(self) -> bool:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(self.path).exists()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep, check, repeat; yield exactly one event, then return."""
        waits = self.intervals()
        errors = self.error_policy(f"waiting for {self.path}", poll="check")
        while True:
            await self.wait(waits)
            try:
                found = await asyncio.to_thread(self._exists)
                errors.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if give_up := errors.failed(exc):
                    yield TriggerEvent({"status": "error", "path": self.path, "message": give_up.message})
                    return
                found = False
            if found:
                yield TriggerEvent({"status": "found", "path": self.path})
                return
            if self.deadline_passed():
                yield TriggerEvent(
                    {"status": "timeout", "path": self.path, "message": f"{self.path} did not appear in time"}
                )
                return
