"""UploadStatusTrigger: waits in the triggerer until a Metrika calls upload is finished.

Why a trigger of our own: the HTTP provider's sensor trigger busy-loops on errors (airflow3-notes §0.4),
and Metrika processing can take hours; a deferred sensor holds no worker slot meanwhile.

Contract (docs/design.md "Triggers"): only primitives in, polls with growing intervals, stops on
permanent errors, idempotent on restart (``deadline`` is an absolute epoch, so a restarted trigger
neither extends the wait nor repeats any side effect: it only reads the upload's status).

Events:

* ``{"status": "success", "upload_id", "counter_id", "uploading": {...}}`` once the status is terminal
  (``PROCESSED`` or ``LINKAGE_FAILURE``; the sensor decides what ``LINKAGE_FAILURE`` means);
* ``{"status": "timeout", "upload_id", "counter_id", "message", "uploading": last record or None}``;
* ``{"status": "error", "upload_id", "counter_id", "message", "permanent"}`` on a permanent error
  (bad token, unknown counter or upload; ``permanent`` true: retrying the task cannot help) or after
  ``max_consecutive_errors`` transient failures in a row (``permanent`` false).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from calltouch_metrika.constants import UPLOAD_TERMINAL_STATUSES
from calltouch_metrika.triggers._polling import PollingTrigger

__all__ = ["UploadStatusTrigger"]


class UploadStatusTrigger(PollingTrigger):
    """Poll ``calls_uploading/{upload_id}`` until it is terminal, the deadline passes, or an error is permanent.

    :param metrika_conn_id: the Metrika connection id.
    :param counter_id: the counter the upload belongs to.
    :param upload_id: the upload (``uploading.id``).
    :param poll_interval: seconds before the first poll; each next wait is ``backoff`` times longer.
    :param max_poll_interval: the longest wait between two polls.
    :param deadline: epoch seconds after which the trigger reports ``timeout`` (None: wait forever).
    :param backoff: growth factor of the wait between polls.
    :param max_consecutive_errors: transient errors in a row tolerated before giving up.
    """

    def __init__(
        self,
        *,
        metrika_conn_id: str,
        counter_id: int,
        upload_id: int,
        poll_interval: float = 5.0,
        max_poll_interval: float = 600.0,
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
        self.metrika_conn_id = metrika_conn_id
        self.counter_id = int(counter_id)
        self.upload_id = int(upload_id)

    def target_kwargs(self) -> dict[str, Any]:
        """The connection, counter and upload watched."""
        return {
            "metrika_conn_id": self.metrika_conn_id,
            "counter_id": self.counter_id,
            "upload_id": self.upload_id,
        }

    def _get_async_hook(self) -> Any:
        """The async Metrika hook (a factory, so the hook is built inside the triggerer's event loop)."""
        from calltouch_metrika.hooks.metrika import MetrikaAsyncHook

        return MetrikaAsyncHook(metrika_conn_id=self.metrika_conn_id)

    def _event(self, status: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {"status": status, "upload_id": self.upload_id, "counter_id": self.counter_id, **extra}
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep, poll, repeat until terminal; yield exactly one event, then return."""
        hook = self._get_async_hook()
        waits = self.intervals()
        errors = self.error_policy(
            f"upload {self.upload_id} on counter {self.counter_id}", poll="status poll"
        )
        last: dict[str, Any] | None = None
        polls = 0
        while True:
            await self.wait(waits)  # first too: the sensor has just polled
            try:
                polls += 1
                last = await hook.get_calls_uploading(self.counter_id, self.upload_id)
                errors.succeeded()
                status = (last or {}).get("status")
                self.log.info("upload %s on counter %s: status %s", self.upload_id, self.counter_id, status)
                if status in UPLOAD_TERMINAL_STATUSES:
                    yield self._event("success", uploading=last, polls=polls)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if give_up := errors.failed(exc):
                    yield self._event("error", permanent=give_up.permanent, message=give_up.message)
                    return
            if self.deadline_passed():
                status = (last or {}).get("status")
                yield self._event(
                    "timeout",
                    uploading=last,
                    message=f"upload {self.upload_id} on counter {self.counter_id} is still "
                    f"{status or 'unknown'} at the deadline; Metrika may need up to 24 hours. "
                    "Re-run the wait task to wait again (the upload is not repeated).",
                )
                return
