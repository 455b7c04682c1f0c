"""PlansImportStatusTrigger against the sandbox: real async HTTP, the trigger's own ``run()`` under asyncio."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from airflow.sdk.module_loading import import_string

from calltouch_metrika.triggers.calltouch import PlansImportStatusTrigger
from tests.helpers import add_plans_imports, trigger_events

SITE_ID = 10001


def trigger(ids: list[int], **kwargs: Any) -> PlansImportStatusTrigger:
    kwargs = {"poll_interval": 0.1, "max_poll_interval": 0.3, **kwargs}
    return PlansImportStatusTrigger(
        calltouch_conn_id="calltouch_default", site_id=SITE_ID, import_log_ids=ids, **kwargs
    )


def status_requests(sandbox: Any) -> int:
    return sandbox.state()["requests"]["total"]


def test_trigger_serializes_to_primitives_and_back() -> None:
    t = trigger([3, 4], deadline=1234.5)
    path, kwargs = t.serialize()
    assert path == "calltouch_metrika.triggers.calltouch.PlansImportStatusTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    again = import_string(path)(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_trigger_intervals_grow_and_are_capped() -> None:
    t = trigger([1], poll_interval=1, max_poll_interval=3, backoff=2)
    waits = t.intervals()
    assert [next(waits) for _ in range(5)] == [1, 2, 3, 3, 3]


async def test_trigger_waits_for_every_import_until_success(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0.5)
    ids = add_plans_imports(3)
    events = await trigger_events(trigger(ids))
    assert events == [{"status": "success", "statuses": {str(i): "success" for i in ids}}]


async def test_trigger_reports_failed_imports_by_id(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0)  # every status is final at once: deterministic
    ok = add_plans_imports(1)
    sandbox.faults(plans_status_error=True)
    bad = add_plans_imports(2)
    events = await trigger_events(trigger(ok + bad))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "failed"
    assert event["failed"] == bad
    assert event["statuses"] == {str(ok[0]): "success", str(bad[0]): "error", str(bad[1]): "error"}


async def test_trigger_times_out_at_the_deadline(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=3600)
    ids = add_plans_imports(2)
    events = await trigger_events(trigger(ids, deadline=time.time() + 0.5))
    assert len(events) == 1
    assert events[0]["status"] == "timeout"
    assert events[0]["pending"] == ids
    assert "still 'in progress...' at the deadline" in events[0]["message"]


async def test_trigger_rides_out_transient_server_errors(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    ids = add_plans_imports(1)
    sandbox.faults(fail_5xx=2, scope="calltouch")  # the next two status polls get 503
    events = await trigger_events(trigger(ids))
    assert events == [{"status": "success", "statuses": {str(ids[0]): "success"}}]


async def test_trigger_stops_at_once_on_an_unknown_import(sandbox: Any) -> None:
    before = status_requests(sandbox)
    events = await trigger_events(trigger([999]))
    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert "999" in events[0]["message"]
    assert status_requests(sandbox) - before == 1  # permanent: no retry loop


async def test_trigger_stops_on_a_bad_token(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLTOUCH_BAD",
        json.dumps(
            {
                "conn_type": "calltouch",
                "host": sandbox.url,
                "password": "not-the-token-42",
                "extra": {"site_id": "10001"},
            }
        ),
    )
    t = PlansImportStatusTrigger(
        calltouch_conn_id="calltouch_bad", site_id=None, import_log_ids=[1], poll_interval=0.05
    )
    events = await trigger_events(t)
    assert [e["status"] for e in events] == ["error"]
    assert "AuthenticationError" in events[0]["message"]
    assert "not-the-token-42" not in events[0]["message"]
