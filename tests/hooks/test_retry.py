"""The retry policy (hooks/_retry.py): ``Retry-After`` in both forms, backoff bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import tenacity

from calltouch_metrika.hooks._retry import Retryable, RetryPolicy, parse_retry_after

NOW = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Mon, 30 Nov 2026 06:02:00 GMT", 120.0),  # IMF-fixdate (RFC 9110 §5.6.7)
        ("Monday, 30-Nov-26 06:00:30 GMT", 30.0),  # obsolete RFC 850 form
        ("Mon Nov 30 06:01:00 2026", 60.0),  # obsolete asctime form (GMT)
        ("Mon, 30 Nov 2026 05:00:00 GMT", 0.0),  # a date in the past: retry now
        ("Mon, 30 Nov 2026 09:00:00 +0300", 0.0),  # = 06:00 GMT
        ("", None),
        (None, None),
        ("soon", None),
        ("Mon, 99 Foo 2026", None),
    ],
)
def test_parse_retry_after_both_forms(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_parse_retry_after_date_against_the_real_clock() -> None:
    later = datetime.now(UTC) + timedelta(seconds=90)
    waited = parse_retry_after(format_datetime(later, usegmt=True))
    assert waited is not None and 85 <= waited <= 90


def _state(attempt: int, exc: BaseException) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_wait_honours_retry_after_capped_and_backs_off_with_jitter() -> None:
    policy = RetryPolicy(max_attempts=6, wait_min=1.0, wait_max=8.0, retry_after_max=30.0)
    plain = Retryable("5xx", "HTTP 503")
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)):
        delay = policy.wait(_state(attempt, plain))
        assert ceiling / 2 <= delay <= ceiling
    assert policy.wait(_state(1, Retryable("429", "x", retry_after=20.0))) >= 20.0
    assert policy.wait(_state(1, Retryable("429", "x", retry_after=3600.0))) == 30.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="retry waits"):
        RetryPolicy(wait_min=5.0, wait_max=1.0)
