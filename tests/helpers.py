"""What several test modules share (not fixtures): plan-file test data, and running the real DAG files.

Not a test module; imported as ``tests.helpers``.

**Plans.** Seed 001 (plans-import) gives one example request body; the plans tests check it both ways: as a
plan file parsed by the transform (tests/transforms/test_plans.py) and as the body the operator sends
to the sandbox (tests/operators/test_plans_import.py); the sandbox's own tests post it directly
(tests/sandbox/test_sandbox_plans.py). All use the constants below, so they test
the same example.

**DAG runs** (the calls pipeline's DAG, operator and sensor tests, and the every-DAG test): a test
config, running a real DAG file through ``dag.test()``, reading task states and XComs, and the
expected CSV rows.
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

from calltouch_metrika.transforms.plans import PLAN_COLUMNS

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
CALLS_DAG_FILE = DAGS / "calltouch_calls_to_metrika.py"
TZ = "Europe/Moscow"
SITE_ID = 10001
COUNTER_ID = 20001

# --------------------------------------------------------------------------------------------------
# Plans (seed 001)
# --------------------------------------------------------------------------------------------------

#: A plan file's header line.
PLAN_HEADER = ",".join(PLAN_COLUMNS)

#: Seed 001's example body, written as plan file rows (file rows 2-4).
SEED_PLAN_ROWS = [
    "2021-04-01,2021-04-02,yandex,cpc,april,sale,распродажа,Лиды,Уникальные лиды,100",
    "2021-04-01,2021-04-20,google,cpc,,,,Сделки и ROI,Выручка,23423",
    "2021-04-01,2021-04-20,,cpc,,,,Пользовательские,Название столбца,22",
]

#: Seed 001's example request body (``items``), verbatim.
SEED_BODY_ITEMS = [
    {
        "dateFrom": "01-04-2021",
        "dateTo": "02-04-2021",
        "source": "yandex",
        "medium": "cpc",
        "campaign": "april",
        "content": "sale",
        "keyword": "распродажа",
        "metric": {"type": "Лиды", "name": "Уникальные лиды", "value": 100},
    },
    {
        "dateFrom": "01-04-2021",
        "dateTo": "20-04-2021",
        "source": "google",
        "medium": "cpc",
        "metric": {"type": "Сделки и ROI", "name": "Выручка", "value": 23423},
    },
    {
        "dateFrom": "01-04-2021",
        "dateTo": "20-04-2021",
        "medium": "cpc",
        "metric": {"type": "Пользовательские", "name": "Название столбца", "value": 22},
    },
]


def plan_csv(*rows: str, header: str = PLAN_HEADER) -> str:
    """A plan file's text: the header, then ``rows``, one per line."""
    return "\n".join([header, *rows]) + "\n"


def write_plan(path: Path, rows: list[str]) -> Path:
    """Write a plan file with the standard header and ``rows``; return its path."""
    path.write_text(plan_csv(*rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# DAG runs
# --------------------------------------------------------------------------------------------------


def recent_day() -> date:
    """A fixed, recent local day: the day before yesterday (inside Metrika's 21-day window, in the past)."""
    return datetime.now(ZoneInfo(TZ)).date() - timedelta(days=2)


def logical_date_for(day: date, tz: str = TZ) -> datetime:
    """The logical date that names local ``day``: its midnight on the pipeline's clock.

    A manual logical date must name a day (``LocalDayTimetable``: a midnight, or "now"); any other
    instant is refused.
    """
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))


def pipeline_entry(tmp_path: Path, name: str = "e2e", **overrides: Any) -> dict[str, Any]:
    """One pipeline of a test config: the sandbox's site and counter, fast polls, no retries, no lookback
    (one day per run, as most tests count uploads; lookback: tests/dags/test_never_twice.py), data
    under ``tmp_path / "data"``; ``overrides`` replace or add keys."""
    pipeline: dict[str, Any] = {
        "name": name,
        "site_id": SITE_ID,
        "counter_id": COUNTER_ID,
        "start_date": "2026-01-01",
        "timezone": TZ,
        "filters": {"with_call_tags": True},
        "storage_root": str(tmp_path / "data"),
        "lookback_days": 0,
        "retries": 0,
        "status_poll_seconds": 0.5,
        "status_timeout_hours": 0.05,
        "owner": "tests",
    }
    pipeline.update(overrides)
    return pipeline


def write_pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *pipelines: dict[str, Any]) -> Path:
    """Write ``pipelines`` as ``tmp_path / "pipelines.yaml"`` and point ``CALLTOUCH_METRIKA_CONFIG`` at it."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"pipelines": list(pipelines)}, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    return path


def write_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "e2e", **overrides: Any
) -> dict[str, Any]:
    """Write a one-pipeline config (:func:`pipeline_entry`) and point ``CALLTOUCH_METRIKA_CONFIG`` at it."""
    pipeline = pipeline_entry(tmp_path, name, **overrides)
    write_pipelines(tmp_path, monkeypatch, pipeline)
    return pipeline


def load_bag(dag_folder: Path = DAGS) -> Any:
    """A DagBag of ``dag_folder`` (a folder or one file) with the current config; no import errors allowed.

    Never ``include_examples`` (a TypeError in Airflow 3.3); examples are off through
    ``AIRFLOW__CORE__LOAD_EXAMPLES`` (tests/conftest.py).
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_folder))
    assert not bag.import_errors, bag.import_errors
    return bag


def load_dag(dag_id: str, dag_folder: Path = CALLS_DAG_FILE) -> Any:
    """The DAG ``dag_id`` parsed from the real DAG file (with the current config)."""
    return load_bag(dag_folder).dags[dag_id]


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


# --------------------------------------------------------------------------------------------------
# Triggers and plans imports against the sandbox
# --------------------------------------------------------------------------------------------------

#: One plans item (seed 001's shape); :func:`add_plans_imports` varies its ``source``.
PLANS_ITEM = {
    "dateFrom": "01-04-2021",
    "dateTo": "02-04-2021",
    "source": "yandex",
    "metric": {"type": "Лиды", "name": "Все лиды", "value": 1},
}


def add_plans_imports(n: int) -> list[int]:
    """Send ``n`` one-item plans imports to the sandbox through the sync hook; their import log ids."""
    from calltouch_metrika.hooks.calltouch import CalltouchHook

    hook = CalltouchHook("calltouch_default")
    return [hook.plans_import_add([{**PLANS_ITEM, "source": f"s{i}"}]) for i in range(n)]


async def trigger_events(trigger: Any) -> list[dict[str, Any]]:
    """Every event payload a trigger's own ``run()`` yields (it must yield exactly one, then return)."""
    return [event.payload async for event in trigger.run()]


def max_in_second(times: list[float]) -> int:
    """Most arrivals in any half-open second ``(t - 1, t]``: what the sandbox (and Calltouch) count."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
