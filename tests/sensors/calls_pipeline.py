"""Helpers shared by the calls-pipeline tests (DAG, operators, sensor): a test config, running the
real DAG file through ``dag.test()``, reading task states and XComs, and the expected CSV rows.

Not a test module; imported as ``tests.sensors.calls_pipeline``.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CALLS_DAG_FILE = REPO / "dags" / "calltouch_calls_to_metrika.py"
TZ = "Europe/Moscow"
SITE_ID = 10001
COUNTER_ID = 20001


def recent_day() -> date:
    """A fixed, recent local day: the day before yesterday (inside Metrika's 21-day window, in the past)."""
    return datetime.now(ZoneInfo(TZ)).date() - timedelta(days=2)


def logical_date_for(day: date, tz: str = TZ) -> datetime:
    """A logical date whose manual data interval (cron ``0 5 * * *``) is exactly local ``day``.

    A manual run gets the last complete interval before its logical date: noon of the next day ->
    ``[day 05:00, day+1 05:00)`` local, i.e. local day ``day``.
    """
    nxt = day + timedelta(days=1)
    return datetime(nxt.year, nxt.month, nxt.day, 12, 0, tzinfo=ZoneInfo(tz))


def write_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "e2e", **overrides: Any
) -> dict[str, Any]:
    """Write a one-pipeline config to ``tmp_path`` and point ``CALLTOUCH_METRIKA_CONFIG`` at it."""
    pipeline: dict[str, Any] = {
        "name": name,
        "site_id": SITE_ID,
        "counter_id": COUNTER_ID,
        "start_date": "2026-01-01",
        "timezone": TZ,
        "filters": {"with_call_tags": True},
        "storage_root": str(tmp_path / "data"),
        "lookback_days": 0,  # one day per run, as these tests count uploads (lookback: tests/test_never_twice.py)
        "retries": 0,
        "status_poll_seconds": 0.5,
        "status_timeout_hours": 0.05,
        "owner": "tests",
    }
    pipeline.update(overrides)
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"pipelines": [pipeline]}, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    return pipeline


def load_dag(dag_id: str) -> Any:
    """The DAG ``dag_id`` parsed from the real DAG file (with the current config)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(CALLS_DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def run_dag(dag_id: str, day: date, conf: dict[str, Any] | None = None) -> Any:
    """``dag.test()`` of the pipeline's DAG for local ``day``; returns the DagRun."""
    dag = load_dag(dag_id)
    return dag.test(logical_date=logical_date_for(day), run_conf=conf)


def task_states(dr: Any) -> dict[str, str]:
    """``{task_id: state}`` of a finished DagRun."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}


def xcom(dr: Any, task_id: str) -> Any:
    """The ``return_value`` XCom of ``task_id`` in ``dr`` (None if there is none)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dr.run_id, dag_ids=dr.dag_id, task_ids=task_id, key="return_value")
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def csv_rows(data: bytes) -> list[dict[str, str]]:
    """CSV bytes as rows, empty values dropped (the sandbox and our writer may differ on blanks only)."""
    return [
        {k: v for k, v in row.items() if v not in ("", None)}
        for row in csv.DictReader(io.StringIO(data.decode()))
    ]


def clean_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Sandbox upload rows with empty values dropped and values as strings."""
    return [{k: str(v) for k, v in row.items() if v not in ("", None)} for row in rows]


def expected_upload(pipeline: dict[str, Any], day: date) -> tuple[list[dict[str, str]], Any]:
    """What the sandbox must have received: the transform applied to the sandbox's own records.

    Fetches the day's calls through the hook (as the extract does), applies ``calls_to_table`` and
    ``calls_to_metrika`` with the pipeline's options, and returns (CSV rows, counts).
    """
    from calltouch_metrika.hooks.calltouch import CalltouchHook
    from calltouch_metrika.transforms.calls import TransformOptions, calls_to_metrika, metrika_csv_bytes
    from calltouch_metrika.transforms.records import calls_to_table

    records = CalltouchHook("calltouch_default", site_id=pipeline["site_id"]).get_calls(
        day, day, **pipeline.get("filters", {})
    )
    identifier = pipeline.get("identifier", {})
    price = pipeline.get("price", {})
    options = TransformOptions(
        identifier=identifier.get("type", "ClientId"),
        identifier_field=identifier.get("field", "yaClientId"),
        price_mode=price.get("mode", "none"),
        price=price.get("value"),
        currency=price.get("currency", "RUB"),
        include_tags=pipeline.get("tags", {}).get("enabled", True),
        site_id=pipeline["site_id"],
        site_timezone=pipeline.get("timezone", TZ),
    )
    result = calls_to_metrika(calls_to_table(records), options, now=datetime.now(ZoneInfo("UTC")))
    return csv_rows(metrika_csv_bytes(result.upload)), result.counts
