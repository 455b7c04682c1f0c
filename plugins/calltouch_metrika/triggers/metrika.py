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
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: Statuses after which Metrika changes nothing more (api-notes §3.4).
TERMINAL_STATUSES = frozenset({"PROCESSED", "LINKAGE_FAILURE"})


def is_permanent_error(exc: BaseException) -> bool:
    """True for errors that polling again cannot fix: authentication, validation, 404 not found.

    Our typed errors say so by deriving from ``AirflowFailException`` (``AuthenticationError``,
    ``ValidationError``, ``NotFoundError``); an HTTP status of 400/401/403/404 on any other error too.
    """
    from airflow.sdk.exceptions import AirflowFailException

    if isinstance(exc, AirflowFailException):
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return status in (400, 401, 403, 404)


class UploadStatusTrigger(BaseTrigger):
    """Poll ``calls_uploading/{upload_id}`` until it is terminal, the deadline passes, or an error is permanent.

    :param metrika_conn_id: the Metrika connection id.
    :param counter_id: the counter the upload belongs to.
    :param upload_id: the upload (``uploading.id``).
    :param poll_interval: seconds before the first re-poll; each next wait is ``backoff`` times longer.
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
        super().__init__()
        self.metrika_conn_id = metrika_conn_id
        self.counter_id = int(counter_id)
        self.upload_id = int(upload_id)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.deadline = None if deadline is None else float(deadline)
        self.backoff = float(backoff)
        self.max_consecutive_errors = int(max_consecutive_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and every init argument (primitives only)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "metrika_conn_id": self.metrika_conn_id,
                "counter_id": self.counter_id,
                "upload_id": self.upload_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "deadline": self.deadline,
                "backoff": self.backoff,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def _get_async_hook(self) -> Any:
        """The async Metrika hook (a factory, so the hook is built inside the triggerer's event loop)."""
        from calltouch_metrika.hooks.metrika import MetrikaAsyncHook

        return MetrikaAsyncHook(metrika_conn_id=self.metrika_conn_id)

    def _event(self, status: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {"status": status, "upload_id": self.upload_id, "counter_id": self.counter_id, **extra}
        )

    def intervals(self) -> Iterator[float]:
        """The waits between polls: ``poll_interval * backoff**n``, capped at ``max_poll_interval``."""
        wait = max(self.poll_interval, 0.0)
        while True:
            yield min(wait, self.max_poll_interval)
            wait = wait * self.backoff if wait > 0 else 0.0

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until terminal; yield exactly one event, then return."""
        hook = self._get_async_hook()
        waits = self.intervals()
        last: dict[str, Any] | None = None
        errors = 0
        polls = 0
        while True:
            try:
                polls += 1
                last = await hook.get_calls_uploading(self.counter_id, self.upload_id)
                errors = 0
                status = (last or {}).get("status")
                self.log.info("upload %s on counter %s: status %s", self.upload_id, self.counter_id, status)
                if status in TERMINAL_STATUSES:
                    yield self._event("success", uploading=last, polls=polls)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_permanent_error(exc):
                    yield self._event(
                        "error",
                        permanent=True,
                        message=f"upload {self.upload_id} on counter {self.counter_id}: "
                        f"{type(exc).__name__}: {exc}",
                    )
                    return
                errors += 1
                self.log.warning(
                    "upload %s on counter %s: status poll failed (%d in a row): %s: %s",
                    self.upload_id,
                    self.counter_id,
                    errors,
                    type(exc).__name__,
                    exc,
                )
                if errors >= self.max_consecutive_errors:
                    yield self._event(
                        "error",
                        permanent=False,
                        message=f"upload {self.upload_id} on counter {self.counter_id}: {errors} status polls "
                        f"failed in a row, the last with {type(exc).__name__}: {exc}",
                    )
                    return
            wait = next(waits)
            if self.deadline is not None:
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    status = (last or {}).get("status")
                    yield self._event(
                        "timeout",
                        uploading=last,
                        message=f"upload {self.upload_id} on counter {self.counter_id} is still "
                        f"{status or 'unknown'} at the deadline; Metrika may need up to 24 hours. "
                        "Re-run the wait task to wait again (the upload is not repeated).",
                    )
                    return
                wait = min(wait, remaining)  # one last poll at the deadline
            await asyncio.sleep(wait)
