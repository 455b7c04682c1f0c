"""UploadStatusTrigger against the sandbox: real async HTTP, the trigger's own ``run()`` under asyncio."""

from __future__ import annotations

import time

import pytest

from calltouch_metrika.triggers.metrika import UploadStatusTrigger

pytestmark = pytest.mark.integration

COUNTER_ID = 20001


def _csv(client_id: str) -> bytes:
    ts = int(time.time()) - 3600
    return f"ClientId,DateTime,PhoneNumber,TalkDuration\n{client_id},{ts},+79991234567,42\n".encode()


def _upload(client_id: str = "1700000000123456789") -> int:
    from calltouch_metrika.hooks.metrika import MetrikaHook

    return int(
        MetrikaHook("metrika_default").upload_calls(COUNTER_ID, _csv(client_id), comment="trigger test")["id"]
    )


async def _events(trigger: UploadStatusTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def _trigger(upload_id: int, **kw) -> UploadStatusTrigger:
    args = {"metrika_conn_id": "metrika_default", "counter_id": COUNTER_ID, "upload_id": upload_id}
    args.update({"poll_interval": 0.2, "max_poll_interval": 0.5, "deadline": time.time() + 60, **kw})
    return UploadStatusTrigger(**args)


def test_serialize_round_trips_primitives_only() -> None:
    from airflow.sdk.module_loading import import_string

    trigger = UploadStatusTrigger(
        metrika_conn_id="m", counter_id=1, upload_id=2, poll_interval=3, max_poll_interval=4, deadline=5.5
    )
    path, kwargs = trigger.serialize()
    assert path == "calltouch_metrika.triggers.metrika.UploadStatusTrigger"
    assert all(isinstance(v, str | int | float | type(None)) for v in kwargs.values())
    again = import_string(path)(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_poll_intervals_grow_and_are_capped() -> None:
    trigger = UploadStatusTrigger(
        metrika_conn_id="m", counter_id=1, upload_id=2, poll_interval=2, max_poll_interval=10, backoff=2
    )
    waits = trigger.intervals()
    assert [next(waits) for _ in range(6)] == [2, 4, 8, 10, 10, 10]


async def test_success_event_carries_the_processed_record(sandbox) -> None:
    sandbox.configure(status_step_seconds=0.1)
    upload_id = _upload()
    (event,) = await _events(_trigger(upload_id))
    assert event["status"] == "success"
    assert event["upload_id"] == upload_id and event["counter_id"] == COUNTER_ID
    assert event["uploading"]["id"] == upload_id
    assert event["uploading"]["status"] == "PROCESSED"
    assert event["uploading"]["line_quantity"] == 1


async def test_linkage_failure_is_a_terminal_success_event(sandbox) -> None:
    sandbox.configure(status_step_seconds=0.1)
    upload_id = _upload(client_id="999")  # unknown to the counter -> LINKAGE_FAILURE
    (event,) = await _events(_trigger(upload_id))
    assert event["status"] == "success" and event["uploading"]["status"] == "LINKAGE_FAILURE"


async def test_bad_counter_is_a_permanent_error(sandbox) -> None:
    (event,) = await _events(_trigger(1, counter_id=99999))
    assert event["status"] == "error" and event["permanent"] is True
    assert "upload 1 on counter 99999" in event["message"]
    assert "sandbox-ym-token" not in event["message"]
    # stopped at once: no retry storm against the API
    assert sandbox.state()["requests"]["by_api"]["metrika"] <= 2


async def test_unknown_upload_is_a_permanent_error(sandbox) -> None:
    (event,) = await _events(_trigger(424242))
    assert event["status"] == "error" and event["permanent"] is True and "424242" in event["message"]


async def test_deadline_gives_a_timeout_event_naming_the_upload(sandbox) -> None:
    sandbox.configure(status_step_seconds=3600)
    upload_id = _upload()
    (event,) = await _events(_trigger(upload_id, deadline=time.time() + 0.5))
    assert event["status"] == "timeout"
    assert f"upload {upload_id}" in event["message"]
    assert event["uploading"]["status"] == "PREPARED"


async def test_transient_errors_are_retried_then_succeed(sandbox) -> None:
    sandbox.configure(status_step_seconds=0.1)
    upload_id = _upload()
    sandbox.faults(fail_5xx=3, scope="metrika")
    (event,) = await _events(_trigger(upload_id))
    assert event["status"] == "success" and event["uploading"]["status"] == "PROCESSED"


async def test_restart_is_idempotent(sandbox) -> None:
    """A triggerer restart re-runs run() from its kwargs: same answer, and the upload is never repeated."""
    sandbox.configure(status_step_seconds=0.1)
    upload_id = _upload()
    _, kwargs = _trigger(upload_id).serialize()
    first = await _events(UploadStatusTrigger(**kwargs))
    second = await _events(UploadStatusTrigger(**kwargs))
    assert first[0]["uploading"]["id"] == second[0]["uploading"]["id"] == upload_id
    assert len(sandbox.state()["uploads"]) == 1
