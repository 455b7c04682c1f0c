"""UploadStatusSensor: skip without an upload, poke/reschedule through the sync hook, defer to the
trigger, and judge the final record (PROCESSED, LINKAGE_FAILURE fail/warn, dropped lines, timeout)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from calltouch_metrika.exceptions import UploadFailedError
from calltouch_metrika.sensors.metrika import UploadStatusSensor, resolve_upload_id
from calltouch_metrika.triggers.metrika import UploadStatusTrigger

COUNTER_ID = 20001


def _upload(client_id: str = "1700000000123456789", rows: int = 1) -> int:
    from calltouch_metrika.hooks.metrika import MetrikaHook

    ts = int(time.time()) - 3600
    body = "ClientId,DateTime\n" + "".join(f"{client_id},{ts - i}\n" for i in range(rows))
    return int(
        MetrikaHook("metrika_default").upload_calls(COUNTER_ID, body.encode(), comment="sensor test")["id"]
    )


def _sensor(upload, **kw) -> UploadStatusSensor:
    return UploadStatusSensor(task_id="wait", counter_id=COUNTER_ID, upload=upload, **kw)


@pytest.mark.parametrize(
    ("upload", "expected"),
    [(None, None), ({"upload_id": None}, None), ({"upload_id": 7}, 7), (7, 7), ("7", 7), ("None", None)],
)
def test_resolve_upload_id(upload, expected) -> None:
    assert resolve_upload_id(upload) == expected


def test_resolve_upload_id_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an upload id"):
        resolve_upload_id("abc")


@pytest.mark.parametrize(
    ("upload", "why"),
    [
        ({"upload_id": None, "dry_run": True}, "dry run"),
        ({"upload_id": None, "dry_run": False, "extracted": 0, "uploaded": 0}, "no calls that day"),
        ({"upload_id": None, "dry_run": False, "extracted": 5, "uploaded": 0}, "every call was rejected"),
        (None, "no upload to wait for"),
    ],
)
def test_skips_without_an_upload(upload, why) -> None:
    with pytest.raises(AirflowSkipException, match=why):
        _sensor(upload).execute({})


@pytest.mark.integration
def test_poke_mode_returns_the_processed_record(sandbox) -> None:
    sandbox.configure(status_step_seconds=0.1)
    upload_id = _upload()
    record = _sensor({"upload_id": upload_id}, deferrable=False, poke_interval=0.2, timeout=30).execute({})
    assert record["id"] == upload_id and record["status"] == "PROCESSED"


@pytest.mark.integration
def test_poke_mode_timeout_names_the_upload(sandbox) -> None:
    sandbox.configure(status_step_seconds=3600)
    upload_id = _upload()
    with pytest.raises(AirflowSensorTimeout, match=f"upload {upload_id} on counter {COUNTER_ID}"):
        _sensor(upload_id, deferrable=False, poke_interval=0.1, timeout=0.5).execute({})


@pytest.mark.integration
def test_deferrable_defers_to_our_trigger_and_completes(sandbox) -> None:
    sandbox.configure(status_step_seconds=0.2)
    upload_id = _upload()
    sensor = _sensor({"upload_id": upload_id}, poke_interval=0.2, max_poke_interval=0.5, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, UploadStatusTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["upload_id"] == upload_id and kwargs["counter_id"] == COUNTER_ID
    assert kwargs["deadline"] == pytest.approx(time.time() + 60, abs=10)
    assert deferred.value.timeout.total_seconds() > 60  # the trigger's own timeout comes first

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    record = sensor.execute_complete({}, event)
    assert record["status"] == "PROCESSED" and record["id"] == upload_id


@pytest.mark.integration
def test_deferrable_does_not_defer_when_already_finished(sandbox) -> None:
    sandbox.configure(status_step_seconds=0)
    upload_id = _upload()
    time.sleep(0.2)
    record = _sensor(upload_id).execute({})
    assert record["status"] == "PROCESSED"


@pytest.mark.integration
def test_garbled_first_status_checks_are_retried(sandbox) -> None:
    """Issue 13 §4: a non-JSON 200 to the sensor's first check (and to the trigger's first poll) is transient."""
    sandbox.configure(status_step_seconds=3600)  # still in progress at the first check: the sensor defers
    upload_id = _upload()
    sandbox.faults(garbled_body=1, scope="metrika")
    sensor = _sensor({"upload_id": upload_id}, poke_interval=0.2, max_poke_interval=0.5, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    sandbox.configure(status_step_seconds=0)
    sandbox.faults(garbled_body=1, scope="metrika")

    async def first_event() -> dict:
        async for event in deferred.value.trigger.run():
            return event.payload
        raise AssertionError("no event")

    record = sensor.execute_complete({}, asyncio.run(first_event()))
    assert record["status"] == "PROCESSED" and record["id"] == upload_id
    assert sandbox.state()["requests"]["by_status"].get("garbled") == 2


def _logged(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    return out + err


def _record(status: str, source: int = 10, lines: int = 10) -> dict:
    return {"id": 5, "status": status, "source_quantity": source, "line_quantity": lines}


def test_linkage_failure_fails_by_default() -> None:
    with pytest.raises(UploadFailedError, match="LINKAGE_FAILURE"):
        _sensor(5).execute_complete(
            {}, {"status": "success", "upload_id": 5, "uploading": _record("LINKAGE_FAILURE")}
        )


def test_linkage_failure_warns_when_configured(capfd: pytest.CaptureFixture[str]) -> None:
    sensor = _sensor(5, on_linkage_failure="warn")
    record = sensor.execute_complete(
        {}, {"status": "success", "upload_id": 5, "uploading": _record("LINKAGE_FAILURE")}
    )
    assert record["status"] == "LINKAGE_FAILURE"
    assert "on_linkage_failure=warn: not failing" in _logged(capfd)


def test_fewer_lines_than_rows_is_a_warning_not_a_failure(capfd: pytest.CaptureFixture[str]) -> None:
    record = _sensor(5).execute_complete(
        {}, {"status": "success", "upload_id": 5, "uploading": _record("PROCESSED", 10, 7)}
    )
    assert record["line_quantity"] == 7
    assert "Metrika accepted 7 of 10 rows of upload 5: 3 row(s) failed" in _logged(capfd)


def test_all_lines_accepted_logs_no_warning(capfd: pytest.CaptureFixture[str]) -> None:
    _sensor(5).execute_complete({}, {"status": "success", "upload_id": 5, "uploading": _record("PROCESSED")})
    logged = _logged(capfd)
    assert "rows accepted 10" in logged and "failed its validation" not in logged


def test_timeout_and_error_events_fail_naming_the_upload() -> None:
    with pytest.raises(AirflowSensorTimeout, match="upload 5"):
        _sensor(5).execute_complete(
            {}, {"status": "timeout", "upload_id": 5, "message": "upload 5 on counter 1 is still MATCHED"}
        )
    with pytest.raises(AirflowFailException, match="upload 5: denied"):
        _sensor(5).execute_complete(
            {}, {"status": "error", "upload_id": 5, "message": "upload 5: denied", "permanent": True}
        )
    with pytest.raises(AirflowException, match="upload 5: 10 polls failed") as transient:
        _sensor(5).execute_complete(
            {},
            {"status": "error", "upload_id": 5, "message": "upload 5: 10 polls failed", "permanent": False},
        )
    assert not isinstance(transient.value, AirflowFailException)  # retried by Airflow


def test_bad_on_linkage_failure_is_rejected() -> None:
    with pytest.raises(ValueError, match="on_linkage_failure"):
        _sensor(5, on_linkage_failure="ignore").execute({})


@pytest.mark.integration
def test_reschedule_mode_frees_the_worker_between_checks(sandbox) -> None:
    from airflow.sdk.exceptions import AirflowRescheduleException

    class FirstTry:  # the task instance of a first try: never rescheduled yet
        def get_first_reschedule_date(self, context):
            return None

    sandbox.configure(status_step_seconds=3600)
    upload_id = _upload()
    sensor = _sensor(upload_id, deferrable=False, mode="reschedule", poke_interval=30, timeout=600)
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        sensor.execute({"ti": FirstTry()})
    wait = (rescheduled.value.reschedule_date - datetime.now(UTC)).total_seconds()
    assert 0 < wait <= 60
