"""The retry policy shared by every transport: which failures are retried, how long to wait, how often.

Retried (idempotent requests; see the transports for the non-idempotent rule): 429 honouring
``Retry-After`` (both forms, RFC 9110 §10.2.3), 5xx, connection errors, timeouts, truncated bodies and
non-JSON ``200`` answers. Exponential backoff with "equal jitter", bounded attempts (tenacity).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import tenacity


class Retryable(Exception):
    """A failed attempt that may be retried.

    ``kind`` is ``429``, ``5xx``, ``connect``, ``timeout``, ``dropped``, ``truncated`` or ``malformed``;
    ``detail`` is a secret-free description for log lines and the final error.
    """

    def __init__(
        self, kind: str, detail: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff and jitter; ``Retry-After`` honoured (capped)."""

    max_attempts: int = 6
    wait_min: float = 1.0
    wait_max: float = 30.0
    retry_after_max: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.wait_min < 0 or self.wait_max < self.wait_min:
            raise ValueError("retry waits need 0 <= retry_wait_min <= retry_wait_max")

    def wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        ceiling = min(self.wait_max, self.wait_min * (2 ** (retry_state.attempt_number - 1)))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter"
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.retry_after_max))
        return delay

    def tenacity_kwargs(self) -> dict[str, object]:
        """tenacity arguments: bounded attempts, this backoff, only :class:`Retryable` failures retried."""
        return {
            "stop": tenacity.stop_after_attempt(self.max_attempts),
            "wait": self.wait,
            "retry": tenacity.retry_if_exception_type(Retryable),
            "reraise": True,
        }


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait (>= 0), or ``None`` when absent or unreadable.

    Both forms of RFC 9110 §10.2.3: delta-seconds (``"120"``) and an HTTP-date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``, read with :func:`email.utils.parsedate_to_datetime`; a date in
    the past means 0). ``now`` (aware, UTC by default) is for tests.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None for unparsable dates
        return None
    if when.tzinfo is None:  # "-0000" or no zone: RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
