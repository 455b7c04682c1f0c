"""What our status triggers share: sleep first, growing waits, an absolute deadline, and the error policy.

Both :class:`~calltouch_metrika.triggers.calltouch.PlansImportStatusTrigger` and
:class:`~calltouch_metrika.triggers.metrika.UploadStatusTrigger` poll one API status until it is
final. They differ in what they poll and in the events they yield, not in how they wait or when they
give up, so that part lives here once (docs/design.md "Triggers": primitives only, growing intervals,
stop on permanent errors, idempotent on restart).

Both sleep before their first poll: the sensor polled just before deferring, so an immediate poll
would only repeat its answer (and a trigger that fires within a second or two of the deferral can get
the task marked failed, apache/airflow#71580). One rule says which errors are permanent
(:func:`is_permanent_error`), for both.

Private module: the triggers' classpaths (stored in the ``trigger`` table) stay in their own modules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from airflow.triggers.base import BaseTrigger

#: HTTP statuses after which polling again cannot help (429 and 5xx are transient).
PERMANENT_HTTP_STATUSES = frozenset({400, 401, 403, 404})


def has_permanent_http_status(exc: BaseException) -> bool:
    """True when the error carries an HTTP status (``status_code`` or ``status``) that retrying cannot fix."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return status in PERMANENT_HTTP_STATUSES


def is_permanent_error(exc: BaseException) -> bool:
    """True for errors that polling again cannot fix, for every trigger of ours.

    Our typed errors say so by deriving from ``AirflowFailException`` (``AuthenticationError``,
    ``ValidationError``, ``NotFoundError``, see :mod:`calltouch_metrika.exceptions`); any other error
    too when it carries an HTTP status of 400/401/403/404. 429, 5xx and network errors are transient.
    """
    from airflow.sdk.exceptions import AirflowFailException

    return isinstance(exc, AirflowFailException) or has_permanent_http_status(exc)


class GiveUp(NamedTuple):
    """Why a trigger stops polling: ``permanent`` (retrying the task cannot help) and a message."""

    permanent: bool
    message: str


class ErrorPolicy:
    """Counts failed polls in a row and says when to stop: at once on a permanent error, else after ``limit``.

    One per ``run()``: a restarted trigger starts counting afresh.
    """

    def __init__(
        self,
        *,
        subject: str,
        limit: int,
        is_permanent: Callable[[BaseException], bool] = is_permanent_error,
        log: Any,
        poll: str = "poll",
    ) -> None:
        self.subject = subject
        self.limit = limit
        self.is_permanent = is_permanent
        self.log = log
        self.poll = poll
        self.in_a_row = 0

    def succeeded(self) -> None:
        """A poll answered: the count of failures in a row starts again."""
        self.in_a_row = 0

    def failed(self, exc: Exception) -> GiveUp | None:
        """A poll raised ``exc``: why to stop now, or None to poll again after the next wait."""
        if self.is_permanent(exc):
            return GiveUp(True, f"{self.subject}: {type(exc).__name__}: {exc}")
        self.in_a_row += 1
        self.log.warning(
            "%s: %s failed (%d in a row): %s: %s",
            self.subject,
            self.poll,
            self.in_a_row,
            type(exc).__name__,
            exc,
        )
        if self.in_a_row >= self.limit:
            return GiveUp(
                False,
                f"{self.subject}: {self.in_a_row} {self.poll}s failed in a row, "
                f"the last with {type(exc).__name__}: {exc}",
            )
        return None


class PollingTrigger(BaseTrigger):
    """Base of a trigger that polls a status with growing waits until it is final or a deadline passes.

    A subclass stores what it watches in ``__init__`` (primitives only), returns those init arguments
    from :meth:`target_kwargs`, and implements ``run()`` as: :meth:`error_policy` once, then a loop of
    ``await self.wait(waits)`` (sleep first, never past the deadline), one poll, and
    :meth:`deadline_passed`.

    :param poll_interval: seconds of the first wait; each next wait is ``backoff`` times longer.
    :param max_poll_interval: the longest wait between two polls.
    :param deadline: epoch seconds after which the trigger reports ``timeout`` (None: wait forever);
        absolute, so a restarted trigger does not extend the wait.
    :param backoff: growth factor of the wait between polls.
    :param max_consecutive_errors: transient errors in a row tolerated before giving up.
    """

    def __init__(
        self,
        *,
        poll_interval: float,
        max_poll_interval: float,
        deadline: float | None,
        backoff: float,
        max_consecutive_errors: int,
    ) -> None:
        super().__init__()
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.deadline = None if deadline is None else float(deadline)
        self.backoff = float(backoff)
        self.max_consecutive_errors = int(max_consecutive_errors)

    def target_kwargs(self) -> dict[str, Any]:
        """The subclass's own init arguments (what it watches), as primitives."""
        raise NotImplementedError

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and every init argument (primitives only): the target first, then the polling settings."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.target_kwargs(),
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "deadline": self.deadline,
                "backoff": self.backoff,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def intervals(self) -> Iterator[float]:
        """The waits between polls: ``poll_interval * backoff**n``, capped at ``max_poll_interval``."""
        wait = max(self.poll_interval, 0.0)
        while True:
            yield min(wait, self.max_poll_interval)
            wait = wait * self.backoff if wait > 0 else 0.0

    def remaining(self) -> float | None:
        """Seconds left until the deadline (zero or less: it has passed); None without a deadline."""
        return None if self.deadline is None else self.deadline - time.time()

    def deadline_passed(self) -> bool:
        """True once the deadline has passed (never without a deadline)."""
        left = self.remaining()
        return left is not None and left <= 0

    async def wait(self, waits: Iterator[float]) -> None:
        """Sleep the next of ``waits`` (from :meth:`intervals`), but not past the deadline: before every poll,
        the first included (the sensor has just polled), so one last poll happens at the deadline."""
        wait = next(waits)
        if (left := self.remaining()) is not None:
            wait = max(0.0, min(wait, left))
        await asyncio.sleep(wait)

    def error_policy(self, subject: str, *, poll: str = "poll") -> ErrorPolicy:
        """A fresh :class:`ErrorPolicy` for one ``run()`` with :func:`is_permanent_error`; ``subject`` starts
        every message and log line."""
        return ErrorPolicy(
            subject=subject,
            limit=self.max_consecutive_errors,
            is_permanent=is_permanent_error,
            log=self.log,
            poll=poll,
        )
