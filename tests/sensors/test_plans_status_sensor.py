"""PlansImportStatusSensor against the sandbox (real HTTP on loopback); its trigger's own tests are in
tests/triggers/test_calltouch_trigger.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred

from calltouch_metrika.operators.calltouch_plans import PlansImportOperator
from calltouch_metrika.sensors.calltouch import PlansImportStatusSensor
from calltouch_metrika.storage import read_plans_ledger_entry
from calltouch_metrika.transforms.plans import PLAN_COLUMNS
from calltouch_metrika.triggers.calltouch import PlansImportStatusTrigger
from tests.helpers import add_plans_imports, trigger_events

SITE_ID = 10001


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

    sandbox.configure(plans_in_progress_seconds=0)  # Calltouch finishes the three imports
    [event] = asyncio.run(trigger_events(t))
    assert s.execute_complete(context={}, event=event) == {"1": "success", "2": "success", "3": "success"}
    assert [read_plans_ledger_entry(ObjectStoragePath(i["ledger"]))["state"] for i in imports] == [
        "succeeded"
    ] * 3
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
    ids = add_plans_imports(2)
    assert sensor(ids).execute(context={}) == {str(i): "success" for i in ids}
    with pytest.raises(ValueError, match="not a plans import"):
        sensor([{"rows": [1]}]).execute(context={})
