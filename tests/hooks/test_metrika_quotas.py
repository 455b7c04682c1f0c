"""Metrika's quota types (issue 16 §1, api-notes §3.5): short ones retried, exhausted daily ones not.

The sandbox answers 429 with the quota's own ``error_type`` (fault ``burst_429_type``). Short-term quotas
(per-second per IP, parallel per user, and those whose period is undocumented) are retried with backoff;
the daily per-user quota (``quota_requests_by_uid``, reset 00:00 GMT) and the hourly one
(``quota_delegate_requests``) raise ``QuotaExceededError`` at once, saying when they reset (UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from calltouch_metrika.exceptions import QuotaExceededError
from calltouch_metrika.hooks._masking import Secrets
from calltouch_metrika.hooks.metrika import METRIKA_QUOTAS, MetrikaAsyncHook, read_429
from tests.hooks.conftest import FAST, api_count, calls_csv, status_count

pytestmark = pytest.mark.integration

COUNTER = 20001
SHORT = sorted(q for q, (period, _) in METRIKA_QUOTAS.items() if period == "short")
LONG = sorted(q for q, (period, _) in METRIKA_QUOTAS.items() if period != "short")


def test_every_documented_quota_type_is_classified() -> None:
    from sandbox.config import METRIKA_QUOTA_TYPES  # the sandbox's list, from Metrika's error reference

    assert set(METRIKA_QUOTAS) == set(METRIKA_QUOTA_TYPES)
    assert METRIKA_QUOTAS["quota_requests_by_uid"][0] == "daily"
    assert {"quota_requests_by_ip", "quota_parallel_requests"} <= set(SHORT)


@pytest.mark.parametrize("quota", SHORT)
def test_short_term_quota_is_retried_with_backoff(sandbox: Any, metrika: Any, quota: str) -> None:
    hook = metrika()
    record = hook.upload_calls(COUNTER, calls_csv())
    sandbox.faults(burst_429=2, burst_429_type=quota, scope="metrika")
    assert hook.get_calls_uploading(COUNTER, record["id"])["id"] == record["id"]
    state = sandbox.state()
    assert status_count(state, "429") == 2 and api_count(state, "metrika") == 4
    sandbox.faults(burst_429=9, burst_429_type=quota, scope="metrika")
    with pytest.raises(QuotaExceededError, match=rf"stayed rate-limited \(HTTP 429 {quota}") as err:
        metrika(max_attempts=2).get_calls_uploading(COUNTER, record["id"])
    assert err.value.status_code == 429 and err.value.resets_at is None


@pytest.mark.parametrize("quota", LONG)
def test_long_quota_is_not_retried_and_says_when_it_resets(sandbox: Any, metrika: Any, quota: str) -> None:
    hook = metrika()
    record = hook.upload_calls(COUNTER, calls_csv())
    sandbox.faults(burst_429=5, burst_429_type=quota, scope="metrika")
    before = datetime.now(UTC)
    with pytest.raises(QuotaExceededError, match=rf"{quota} quota .* is exhausted") as err:
        hook.get_calls_uploading(COUNTER, record["id"])
    assert api_count(sandbox.state(), "metrika") == 2  # the upload, then one status request: no retry
    resets = err.value.resets_at
    if quota == "quota_requests_by_uid":
        expected = datetime.combine(before.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    else:
        expected = before.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert resets == expected or (resets - expected) in (
        timedelta(days=1),
        timedelta(hours=1),
    )  # midnight race
    assert f"resets at {resets:%Y-%m-%d %H:%M} UTC" in str(err.value)
    assert f"Metrika counter {COUNTER}, upload {record['id']}" in str(err.value)


def test_daily_quota_on_upload_is_not_resent(sandbox: Any, metrika: Any) -> None:
    sandbox.faults(burst_429=5, burst_429_type="quota_requests_by_uid", scope="metrika")
    with pytest.raises(QuotaExceededError, match="00:00 GMT"):
        metrika().upload_calls(COUNTER, calls_csv(), comment="daily")
    state = sandbox.state()
    assert state["uploads"] == [] and api_count(state, "metrika") == 1


async def test_async_hook_daily_quota_is_not_retried(sandbox: Any, metrika: Any) -> None:
    record = metrika().upload_calls(COUNTER, calls_csv())
    sandbox.faults(burst_429=5, burst_429_type="quota_requests_by_uid", scope="metrika")
    with pytest.raises(QuotaExceededError, match="quota_requests_by_uid quota"):
        await MetrikaAsyncHook(**FAST).get_calls_uploading(COUNTER, record["id"])
    assert api_count(sandbox.state(), "metrika") == 2
    sandbox.faults(burst_429=1, burst_429_type="quota_parallel_requests", scope="metrika")
    assert (await MetrikaAsyncHook(**FAST).get_calls_uploading(COUNTER, record["id"]))["id"] == record["id"]


@pytest.mark.parametrize(
    ("now", "resets"),
    [
        (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 12, 31, 0, 0, 0, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        # 02:00 in Moscow on 1 December is still 30 November in GMT: the quota resets at 03:00 Moscow time
        (datetime.fromisoformat("2026-12-01T02:00:00+03:00"), datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_daily_reset_is_the_next_midnight_gmt(now: datetime, resets: datetime) -> None:
    body = '{"errors":[{"error_type":"quota_requests_by_uid","message":"Quota exceeded"}],"code":429}'
    answer = read_429(body, Secrets(), now=now)
    assert answer.resets_at == resets and answer.final is not None
    assert f"resets at {resets:%Y-%m-%d %H:%M} UTC (00:00 GMT)" in answer.final


def test_unknown_or_unparsable_429_is_retried() -> None:
    assert read_429('{"errors":[{"error_type":"quota","message":"x"}]}', Secrets()).final is None
    assert read_429('{"errors":[{"error_type":"quota_something_new"}]}', Secrets()).final is None
    assert read_429("Too Many Requests", Secrets()).final is None


def test_emulated_daily_quota_stops_the_task_at_once(sandbox: Any, metrika: Any) -> None:
    """The sandbox's own daily per-user quota (``metrika_daily_quota``), not a fault: spent, then no retry."""
    sandbox.reset(metrika_daily_quota=2)
    hook = metrika()
    record = hook.upload_calls(COUNTER, calls_csv(), comment="daily-1")
    assert hook.get_calls_uploading(COUNTER, record["id"])["id"] == record["id"]
    before = api_count(sandbox.state(), "metrika")
    with pytest.raises(
        QuotaExceededError, match=r"quota_requests_by_uid quota .* resets at .* UTC \(00:00 GMT\)"
    ):
        hook.find_calls_uploading(COUNTER, comment="daily-1")
    assert api_count(sandbox.state(), "metrika") == before + 1
