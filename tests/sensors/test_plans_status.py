"""PlansImportStatusSensor and PlansImportStatusTrigger against the sandbox (real HTTP on loopback)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred
from airflow.sdk.module_loading import import_string

from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.operators.calltouch_plans import PlansImportOperator, read_ledger_entry
from calltouch_metrika.sensors.calltouch import PlansImportStatusSensor
from calltouch_metrika.transforms.plans import PLAN_COLUMNS
from calltouch_metrika.triggers.calltouch import PlansImportStatusTrigger

SITE_ID = 10001
ITEM = {
    "dateFrom": "01-04-2021",
    "dateTo": "02-04-2021",
    "source": "yandex",
    "metric": {"type": "Лиды", "name": "Все лиды", "value": 1},
}


def add_imports(n: int) -> list[int]:
    hook = CalltouchHook("calltouch_default")
    return [hook.plans_import_add([{**ITEM, "source": f"s{i}"}]) for i in range(n)]


def trigger(ids: list[int], **kwargs: Any) -> PlansImportStatusTrigger:
    kwargs = {"poll_interval": 0.1, "max_poll_interval": 0.3, **kwargs}
    return PlansImportStatusTrigger(
        calltouch_conn_id="calltouch_default", site_id=SITE_ID, import_log_ids=ids, **kwargs
    )


async def events_of(t: PlansImportStatusTrigger) -> list[dict[str, Any]]:
    return [e.payload async for e in t.run()]


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
    ids = add_imports(3)
    events = await events_of(trigger(ids))
    assert events == [{"status": "success", "statuses": {str(i): "success" for i in ids}}]


async def test_trigger_reports_failed_imports_by_id(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0)  # every status is final at once: deterministic
    ok = add_imports(1)
    sandbox.faults(plans_status_error=True)
    bad = add_imports(2)
    events = await events_of(trigger(ok + bad))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "failed"
    assert event["failed"] == bad
    assert event["statuses"] == {str(ok[0]): "success", str(bad[0]): "error", str(bad[1]): "error"}


async def test_trigger_times_out_at_the_deadline(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=3600)
    ids = add_imports(2)
    events = await events_of(trigger(ids, deadline=time.time() + 0.5))
    assert len(events) == 1
    assert events[0]["status"] == "timeout"
    assert events[0]["pending"] == ids
    assert "still 'in progress...' at the deadline" in events[0]["message"]


async def test_trigger_rides_out_transient_server_errors(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    ids = add_imports(1)
    sandbox.faults(fail_5xx=2, scope="calltouch")  # the next two status polls get 503
    events = await events_of(trigger(ids))
    assert events == [{"status": "success", "statuses": {str(ids[0]): "success"}}]


async def test_trigger_stops_at_once_on_an_unknown_import(sandbox: Any) -> None:
    before = status_requests(sandbox)
    events = await events_of(trigger([999]))
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
    events = await events_of(t)
    assert [e["status"] for e in events] == ["error"]
    assert "AuthenticationError" in events[0]["message"]
    assert "not-the-token-42" not in events[0]["message"]


# -- sensor ---------------------------------------------------------------------------------------


def import_file(tmp_path: Path, n: int) -> list[dict[str, Any]]:
    plan = tmp_path / "plan.csv"
    lines = [",".join(PLAN_COLUMNS)] + [
        f"2026-12-01,2026-12-31,src{i},cpc,,,,Площадки,Клики,{i}" for i in range(n)
    ]
    plan.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = PlansImportOperator(
        task_id="import_plans", plans_file=str(plan), storage_root=str(tmp_path / "data")
    ).execute(context={})
    return out


def sensor(imports: Any, **kwargs: Any) -> PlansImportStatusSensor:
    kwargs = {"poke_interval": 0.1, "max_poke_interval": 0.3, "timeout": 60, **kwargs}
    return PlansImportStatusSensor(task_id="wait_for_import", imports=imports, **kwargs)


def test_sensor_defers_then_completes_and_records_the_ledger(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=3600)
    imports = import_file(tmp_path, 250)
    s = sensor(imports, timeout=120)
    with pytest.raises(TaskDeferred) as deferred:
        s.execute(context={})
    t = deferred.value.trigger
    assert isinstance(t, PlansImportStatusTrigger)
    assert t.import_log_ids == [1, 2, 3]
    assert t.site_id == SITE_ID
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout.total_seconds() > 120
    assert t.deadline is not None and t.deadline <= time.time() + 120

    import asyncio

    sandbox.configure(plans_in_progress_seconds=0)  # Calltouch finishes the three imports
    [event] = asyncio.run(events_of(t))
    assert s.execute_complete(context={}, event=event) == {"1": "success", "2": "success", "3": "success"}
    from airflow.sdk import ObjectStoragePath

    assert [read_ledger_entry(ObjectStoragePath(i["ledger"]))["state"] for i in imports] == ["succeeded"] * 3
    assert [p["status"] for p in sandbox.state()["plans_imports"]] == ["success"] * 3


def test_sensor_error_names_import_ids_and_file_rows(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    sandbox.faults(plans_status_error=True)
    imports = import_file(tmp_path, 150)
    with pytest.raises(AirflowException) as exc:
        sensor(imports).execute(context={})
    message = str(exc.value)
    assert "plans import(s) 1 (plan.csv:rows 2-101), 2 (plan.csv:rows 102-151) as ['error']" in message
    assert "NOT imported" in message


def test_sensor_error_event_after_deferral_names_ids_and_rows(sandbox: Any, tmp_path: Path) -> None:
    imports = [
        {"import_log_id": 7, "rows": [2, 3], "file": "p.csv"},
        {"import_log_id": 8, "rows": [4], "file": "p.csv"},
    ]
    event = {"status": "failed", "statuses": {"7": "success", "8": "error"}, "failed": [8], "pending": []}
    with pytest.raises(AirflowException, match=r"8 \(p\.csv:row 4\) as \['error'\]"):
        sensor(imports).execute_complete(context={}, event=event)


def test_sensor_timeout_event_is_a_clear_sensor_timeout() -> None:
    imports = [{"import_log_id": 5, "rows": list(range(2, 102)), "file": "p.csv"}]
    event = {"status": "timeout", "statuses": {"5": "in progress..."}, "pending": [5], "message": "x"}
    with pytest.raises(AirflowSensorTimeout) as exc:
        sensor(imports, timeout=30).execute_complete(context={}, event=event)
    assert str(exc.value).startswith("plans import(s) 5 (p.csv:rows 2-101) still 'in progress...' after 30 s")


def test_sensor_in_poke_mode_times_out_clearly(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=3600)
    imports = import_file(tmp_path, 3)
    with pytest.raises(AirflowSensorTimeout) as exc:
        sensor(imports, deferrable=False, timeout=0.5, poke_interval=0.1).execute(context={})
    assert "plans import(s) 1 (plan.csv:rows 2-4) still 'in progress...' after 0.5 s" in str(exc.value)


def test_sensor_in_poke_mode_waits_for_success(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0.3)
    imports = import_file(tmp_path, 120)
    assert sensor(imports, deferrable=False).execute(context={}) == {"1": "success", "2": "success"}


@pytest.mark.parametrize("imports", [[], None, ""])
def test_sensor_without_imports_returns_at_once(imports: Any) -> None:
    assert sensor(imports).execute(context={}) == {}


def test_sensor_accepts_bare_ids_and_refuses_garbage(sandbox: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    ids = add_imports(2)
    assert sensor(ids).execute(context={}) == {str(i): "success" for i in ids}
    with pytest.raises(ValueError, match="not a plans import"):
        sensor([{"rows": [1]}]).execute(context={})
