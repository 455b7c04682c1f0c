"""What both status triggers share (triggers/_polling.py): one permanent-error rule, and sleep first.

The rule is checked on our typed errors and on bare HTTP statuses; "sleep first" is checked on each
real trigger against the sandbox: even when the status is already final, the one event arrives no
sooner than ``poll_interval`` (the sensor has just polled; and apache/airflow#71580: a trigger that
fires within a second or two of the deferral can get the task marked failed).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from calltouch_metrika.exceptions import (
    AuthenticationError,
    MalformedResponseError,
    NotFoundError,
    QuotaExceededError,
    ServerError,
    UploadFailedError,
    ValidationError,
)
from calltouch_metrika.triggers import _polling
from calltouch_metrika.triggers._polling import is_permanent_error
from calltouch_metrika.triggers.calltouch import PlansImportStatusTrigger
from calltouch_metrika.triggers.metrika import UploadStatusTrigger
from tests.helpers import COUNTER_ID, SITE_ID, add_plans_imports, trigger_events


class _HttpError(Exception):
    """A foreign error carrying an HTTP status the way requests/aiohttp errors do."""

    def __init__(self, status: int, attr: str = "status_code") -> None:
        super().__init__(f"HTTP {status}")
        setattr(self, attr, status)


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("bad token"),
        ValidationError("bad field", [("items[0].dateFrom", "invalid")]),
        NotFoundError("no such upload"),
        UploadFailedError("linkage failure"),
        _HttpError(400),
        _HttpError(401),
        _HttpError(403, attr="status"),
        _HttpError(404),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:12],
)
def test_permanent_errors(exc: BaseException) -> None:
    assert is_permanent_error(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        QuotaExceededError("429"),
        ServerError("503"),
        MalformedResponseError("truncated"),
        TimeoutError("read timed out"),
        ConnectionResetError("reset"),
        _HttpError(429),
        _HttpError(500),
        _HttpError(503, attr="status"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:12],
)
def test_transient_errors(exc: BaseException) -> None:
    assert is_permanent_error(exc) is False


def test_both_triggers_use_the_one_rule() -> None:
    """No trigger module keeps a rule of its own: the policy each ``run()`` builds uses the shared one."""
    from calltouch_metrika.triggers import calltouch, metrika

    for module in (calltouch, metrika):
        assert not hasattr(module, "is_permanent_error"), module.__name__
    for trig in (
        PlansImportStatusTrigger(calltouch_conn_id="c", site_id=1, import_log_ids=[1]),
        UploadStatusTrigger(metrika_conn_id="m", counter_id=1, upload_id=2),
    ):
        assert trig.error_policy("x").is_permanent is _polling.is_permanent_error


async def _timed(trigger: Any) -> tuple[float, list[dict[str, Any]]]:
    t0 = time.monotonic()
    events = await trigger_events(trigger)
    return time.monotonic() - t0, events


@pytest.mark.integration
async def test_plans_trigger_sleeps_before_its_first_poll(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0)  # final at once: only the first sleep delays the event
    ids = add_plans_imports(1)
    before = sandbox.state()["requests"]["total"]
    elapsed, events = await _timed(
        PlansImportStatusTrigger(
            calltouch_conn_id="calltouch_default", site_id=SITE_ID, import_log_ids=ids, poll_interval=1.0
        )
    )
    assert events == [{"status": "success", "statuses": {str(ids[0]): "success"}}]
    assert elapsed >= 1.0
    assert sandbox.state()["requests"]["total"] - before == 1


@pytest.mark.integration
async def test_upload_trigger_sleeps_before_its_first_poll(sandbox: Any) -> None:
    from calltouch_metrika.hooks.metrika import MetrikaHook

    sandbox.configure(status_step_seconds=0)  # PROCESSED at once: only the first sleep delays the event
    csv = f"ClientId,DateTime,PhoneNumber,TalkDuration\n1700000000123456789,{int(time.time()) - 3600},+79991234567,42\n"
    upload_id = int(MetrikaHook("metrika_default").upload_calls(COUNTER_ID, csv.encode(), comment="t")["id"])
    elapsed, events = await _timed(
        UploadStatusTrigger(
            metrika_conn_id="metrika_default", counter_id=COUNTER_ID, upload_id=upload_id, poll_interval=1.0
        )
    )
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["uploading"]["status"] == "PROCESSED" and events[0]["polls"] == 1
    assert elapsed >= 1.0
