"""The requests export DAGs (dags/calltouch_requests_export.py) and the example consumer.

* Parsing: one DAG per pipeline with ``requests_export.enabled``, interval schedule in the pipeline's
  time zone, catchup, the Asset in the extract task's outlets, every seed-004 parameter passed from
  the config to the operator; parsing calls no API and imports no pandas.
* ``dag.test()`` end to end against the sandbox: the day's file is written, the Asset event is
  recorded in the metadata DB (and queued for the consumer DAG), and the consumer reads the dataset.

The pipelines file is written per test and selected with ``$CALLTOUCH_METRIKA_CONFIG``, exactly as a
deployment would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pendulum
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
EXPORT_FILE = REPO / "dags" / "calltouch_requests_export.py"
CONSUMER_FILE = REPO / "dags" / "example_requests_consumer.py"
SITE_ID = 10001
TZ = "Europe/Moscow"

#: Every parameter of seed 004, as a user writes it in pipelines.yaml (snake_case, hook names).
ALL_PARAMS: dict[str, Any] = {
    "time_from": "08:00:00",
    "time_to": "20:00:00",
    "attribution": 1,
    "request_number": ["web-1", "2"],
    "request_id": [1, 2],
    "subject": "Заявка",
    "keywords": "диван",
    "city": "Москва",
    "source": "yandex",
    "medium": "cpc",
    "bind_to": "session",
    "ani_value": "7999",
    "ani_filter_mode": "contains",
    "email_value": "client",
    "email_filter_mode": "startwith",
    "manager": "Иванова Анна",
    "with_map_visits": True,
    "with_request_tags": True,
    "with_yandex_direct": True,
    "with_google_adwords": True,
    "with_attrs": True,
    "with_widget_info": True,
    "with_custom_fields": True,
    "with_dcm": True,
}

#: The flags used by the end-to-end run: every block, no filter (the whole day).
ALL_FLAGS = {k: v for k, v in ALL_PARAMS.items() if k.startswith("with_")}


def write_config(path: Path, storage_root: Path, leads_params: dict[str, Any]) -> Path:
    """A pipelines file: ``leads`` exports requests; ``calls_only`` has no export; ``export_off`` disables it."""
    doc = {
        "defaults": {"timezone": TZ, "schedule": "0 5 * * *", "storage_root": str(storage_root)},
        "pipelines": [
            {
                "name": "leads",
                "site_id": SITE_ID,
                "counter_id": 20001,
                "start_date": "2026-11-01",
                "max_active_runs": 2,
                "retries": 0,
                "owner": "analytics",
                "requests_export": {"enabled": True, "schedule": "30 6 * * *", "params": leads_params},
            },
            {"name": "calls_only", "site_id": 10002, "counter_id": 20002, "start_date": "2026-11-01"},
            {
                "name": "export_off",
                "site_id": 10002,
                "counter_id": 20002,
                "start_date": "2026-11-01",
                # not calls_only's filters: identical ones on one counter are a config error (issue 12)
                "filters": {"target_only": True},
                "requests_export": {"enabled": False, "params": {"with_dcm": True}},
            },
        ],
    }
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return path


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One storage root for the whole session.

    An Asset is identified by its name *and* URI: a second URI under the same name would conflict
    with the first in the metadata DB (Airflow then keeps the new one inactive and records no event).
    """
    return tmp_path_factory.mktemp("requests-data")


@pytest.fixture
def config_file(tmp_path: Path, storage_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_config(tmp_path / "pipelines.yaml", storage_root, ALL_FLAGS)
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    return path


def load_bag(*files: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    dags: dict[str, Any] = {}
    for file in files:
        bag = DagBag(dag_folder=str(file))
        assert not bag.import_errors, bag.import_errors
        dags.update(bag.dags)
    return dags


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def test_one_dag_per_enabled_pipeline(config_file: Path, storage_root: Path) -> None:
    from airflow.sdk import Asset

    from calltouch_metrika.timetables import LocalDayTimetable

    dags = load_bag(EXPORT_FILE)
    assert set(dags) == {"calltouch_requests_export__leads"}
    dag = dags["calltouch_requests_export__leads"]

    # requests_export.schedule "30 6 * * *" wins over the pipeline's
    assert dag.timetable == LocalDayTimetable(at="06:30", timezone=TZ)
    assert dag.catchup is True
    assert dag.start_date == pendulum.datetime(2026, 11, 1, tz=TZ)
    assert dag.max_active_runs == 2
    assert set(dag.tags) == {"calltouch", "requests"}  # the pipeline's default tags, minus "metrika"
    assert dag.doc_md

    (task,) = dag.tasks
    assert task.task_id == "extract_requests"
    assert task.kind == "requests"
    assert (task.site_id, task.timezone, task.calltouch_conn_id) == (SITE_ID, TZ, "calltouch_default")
    assert task.storage_root == str(storage_root)
    assert task.api_params == ALL_FLAGS
    assert (task.owner, task.retries) == ("analytics", 0)

    (asset,) = task.outlets
    assert isinstance(asset, Asset)
    assert asset.name == "calltouch_requests__leads"
    assert asset.uri == f"{storage_root.resolve().as_uri()}/calltouch/requests/site={SITE_ID}"


def test_schedule_defaults_to_the_pipeline_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path / "p.yaml", tmp_path / "data", {})
    doc = json.loads(path.read_text(encoding="utf-8"))
    del doc["pipelines"][0]["requests_export"]["schedule"]
    path.write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    dag = load_bag(EXPORT_FILE)["calltouch_requests_export__leads"]
    assert dag.timetable.at == "05:00"  # the pipeline's "0 5 * * *"


def test_every_seed_parameter_flows_from_config_to_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calltouch_metrika.hooks.calltouch import REQUESTS_PARAMS

    assert set(ALL_PARAMS) == set(REQUESTS_PARAMS)
    path = write_config(tmp_path / "p.yaml", tmp_path / "data", ALL_PARAMS)
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    (task,) = load_bag(EXPORT_FILE)["calltouch_requests_export__leads"].tasks
    assert task.api_params == ALL_PARAMS


def test_asset_uri_has_no_connection_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path / "p.yaml", tmp_path / "data", {})
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["defaults"]["storage_root"] = "s3://aws_lake@analytics-bucket/raw"
    path.write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    dags = load_bag(EXPORT_FILE, CONSUMER_FILE)
    (asset,) = dags["calltouch_requests_export__leads"].tasks[0].outlets
    assert asset.uri == f"s3://analytics-bucket/raw/calltouch/requests/site={SITE_ID}"


def test_consumer_is_scheduled_on_the_same_assets(config_file: Path) -> None:
    dags = load_bag(EXPORT_FILE, CONSUMER_FILE)
    (produced,) = dags["calltouch_requests_export__leads"].tasks[0].outlets
    consumer = dags["example_requests_consumer"]
    scheduled = list(consumer.timetable.asset_condition.objects)
    assert scheduled == [produced]  # same name, same URI
    assert consumer.tasks[0].inlets == [produced]
    assert (consumer.tasks[0].owner, consumer.tasks[0].retries) == ("analytics", 1)
    assert consumer.catchup is False and consumer.tags and consumer.doc_md


def test_no_consumer_dag_without_an_enabled_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path / "p.yaml", tmp_path / "data", {})
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["pipelines"] = doc["pipelines"][1:]
    path.write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    assert load_bag(EXPORT_FILE, CONSUMER_FILE) == {}


def test_bad_parameter_in_config_is_an_import_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    path = write_config(tmp_path / "p.yaml", tmp_path / "data", {"with_call_tags": True})
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    bag = DagBag(dag_folder=str(EXPORT_FILE.parent))
    assert "calltouch_requests_export__leads" not in bag.dags  # the broken pipeline hides only itself
    (error,) = bag.import_errors.values()
    assert "pipeline 'leads': key 'requests_export.params'" in error and "with_call_tags" in error


def test_parsing_calls_no_api_and_imports_no_pandas_or_pyarrow(sandbox: Any, config_file: Path) -> None:
    before = sandbox.state()["requests"]["by_api"]["calltouch"]
    code = textwrap.dedent(
        f"""
        import sys
        from airflow.dag_processing.dagbag import DagBag
        for f in ({str(EXPORT_FILE)!r}, {str(CONSUMER_FILE)!r}):
            bag = DagBag(dag_folder=f)
            assert not bag.import_errors, bag.import_errors
            assert bag.dags, f
        heavy = sorted(set(m.split(".")[0] for m in sys.modules) & set(["pandas", "pyarrow", "numpy"]))
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy(), cwd=REPO, timeout=300)
    assert sandbox.state()["requests"]["by_api"]["calltouch"] == before


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------


def _asset_events(run_id: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent, AssetModel)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == run_id)
        ).all()
        return [
            {
                "name": asset.name,
                "uri": asset.uri,
                "asset_id": asset.id,
                "source_dag_id": event.source_dag_id,
                "source_task_id": event.source_task_id,
            }
            for event, asset in rows
        ]


def _queued_for(dag_id: str, asset_id: int) -> bool:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return (
            session.scalar(
                select(AssetDagRunQueue).where(
                    AssetDagRunQueue.target_dag_id == dag_id, AssetDagRunQueue.asset_id == asset_id
                )
            )
            is not None
        )


def _xcom(dag_id: str, run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
    return json.loads(value) if isinstance(value, str | bytes) else value


@pytest.mark.airflow
@pytest.mark.integration
def test_dag_test_writes_the_day_and_records_the_asset_event(
    sandbox: Any, airflow_db: Path, config_file: Path, storage_root: Path
) -> None:
    from airflow.utils.state import DagRunState

    from sandbox.generators import generate_requests

    dags = load_bag(EXPORT_FILE, CONSUMER_FILE)
    dag = dags["calltouch_requests_export__leads"]
    # The logical date names the day: 19 November 00:00 on the pipeline's clock -> local day 11-19.
    dr = dag.test(logical_date=pendulum.datetime(2026, 11, 19, tz=TZ))
    assert dr.state == DagRunState.SUCCESS

    day = date(2026, 11, 19)
    expected = generate_requests("42", SITE_ID, day, 40, TZ)
    file = (
        storage_root / "calltouch" / "requests" / f"site={SITE_ID}" / "date=2026-11-19" / "requests.parquet"
    )
    table = pq.read_table(file)
    assert table.column("request_id").to_pylist() == [r["requestId"] for r in expected]
    # The flags from the config reached the API: their blocks are in the file.
    assert table.column("map_visits").null_count == 0
    assert table.column("request_tags").null_count == 0
    assert table.column("dcm").null_count == 0
    assert table.column("custom_fields").null_count == 0

    result = _xcom(dag.dag_id, dr.run_id, "extract_requests")
    assert result["rows"] == len(expected)
    assert (result["date_from"], result["date_to"]) == ("2026-11-19", "2026-11-20")

    (event,) = _asset_events(dr.run_id)
    assert event["name"] == "calltouch_requests__leads"
    assert event["uri"] == f"{storage_root.resolve().as_uri()}/calltouch/requests/site={SITE_ID}"
    assert (event["source_dag_id"], event["source_task_id"]) == (dag.dag_id, "extract_requests")
    # The consumer DAG is scheduled on the Asset: the event queued a run for it.
    assert _queued_for("example_requests_consumer", event["asset_id"])

    # The consumer (run by hand: no triggering event) reads the newest partition of the dataset.
    consumer = dags["example_requests_consumer"]
    cdr = consumer.test()
    assert cdr.state == DagRunState.SUCCESS
    summary = _xcom(consumer.dag_id, cdr.run_id, "summarise_requests")
    assert summary["rows"] == len(expected)
    assert summary["files"] == [f"file://{file.resolve()}"]
    assert sum(summary["subjects"].values()) == len(expected)


@pytest.mark.airflow
@pytest.mark.integration
def test_dag_test_empty_day(sandbox: Any, airflow_db: Path, config_file: Path, storage_root: Path) -> None:
    from airflow.utils.state import DagRunState

    from calltouch_metrika.transforms.requests import REQUESTS_SCHEMA

    sandbox.reset(requests_per_day=0)
    dag = load_bag(EXPORT_FILE)["calltouch_requests_export__leads"]
    dr = dag.test(logical_date=pendulum.datetime(2026, 11, 17, tz=TZ))
    assert dr.state == DagRunState.SUCCESS
    file = (
        storage_root / "calltouch" / "requests" / f"site={SITE_ID}" / "date=2026-11-17" / "requests.parquet"
    )
    table = pq.read_table(file)
    assert table.num_rows == 0 and table.schema.equals(REQUESTS_SCHEMA)
    # An empty day is still a successful export: the Asset event is recorded.
    assert [e["name"] for e in _asset_events(dr.run_id)] == ["calltouch_requests__leads"]


def _run_asset_triggered(dag: Any, asset_event_ids: list[int]) -> Any:
    """Create an asset-triggered run of ``dag`` consuming the given events, as the scheduler does, and run it.

    The scheduler is not running in tests; this mirrors ``SchedulerJobRunner`` (create the run with
    ``run_type=ASSET_TRIGGERED`` and attach ``consumed_asset_events``), then runs each task in process
    exactly as ``dag.test()`` does.
    """
    from airflow import settings
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.sdk import timezone
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    session = settings.Session()
    scheduler_dag = SerializedDagModel.get_dag(dag.dag_id, session=session)
    assert scheduler_dag is not None, f"{dag.dag_id} is not serialized"
    now = timezone.utcnow()
    dr = scheduler_dag.create_dagrun(
        run_id=DagRun.generate_run_id(run_type=DagRunType.ASSET_TRIGGERED, logical_date=None, run_after=now),
        logical_date=None,
        data_interval=None,
        run_after=now,
        run_type=DagRunType.ASSET_TRIGGERED,
        triggered_by=DagRunTriggeredByType.ASSET,
        state=DagRunState.RUNNING,
        session=session,
    )
    dr.consumed_asset_events.extend(
        session.scalars(select(AssetEvent).where(AssetEvent.id.in_(asset_event_ids)))
    )
    session.commit()
    while dr.state == DagRunState.RUNNING:
        schedulable, _ = dr.update_state(session=session)
        for ti in schedulable:
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        if not schedulable:
            continue
        for ti in schedulable:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        session.expire_all()
    return dr


@pytest.mark.airflow
@pytest.mark.integration
def test_consumer_reads_the_files_named_by_its_triggering_events(
    sandbox: Any, airflow_db: Path, config_file: Path, storage_root: Path
) -> None:
    """The real path: an asset-triggered consumer run finds the files through the events' source runs."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    dags = load_bag(EXPORT_FILE, CONSUMER_FILE)
    export = dags["calltouch_requests_export__leads"]
    runs = [export.test(logical_date=pendulum.datetime(2026, 11, d, tz=TZ)) for d in (11, 12)]
    assert [r.state for r in runs] == [DagRunState.SUCCESS] * 2
    with create_session() as session:
        event_ids = list(
            session.scalars(
                select(AssetEvent.id).where(AssetEvent.source_run_id.in_([r.run_id for r in runs]))
            )
        )
    assert len(event_ids) == 2

    consumer = dags["example_requests_consumer"]
    dr = _run_asset_triggered(consumer, event_ids)
    assert dr.state == DagRunState.SUCCESS
    summary = _xcom(consumer.dag_id, dr.run_id, "summarise_requests")
    site_dir = storage_root.resolve() / "calltouch" / "requests" / f"site={SITE_ID}"
    # Exactly the two days the events came from (not the newest partition, not every partition).
    assert sorted(summary["files"]) == [
        f"file://{site_dir}/date=2026-11-11/requests.parquet",
        f"file://{site_dir}/date=2026-11-12/requests.parquet",
    ]
    assert summary["rows"] == 80


def test_catchup_runs_cover_consecutive_local_days_from_start_date(config_file: Path) -> None:
    """The scheduler's (and a backfill's) runs: one per local day since start_date, run the morning after."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    dag = load_bag(EXPORT_FILE)["calltouch_requests_export__leads"]
    timetable = coerce_to_core_timetable(dag.timetable)
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=True)
    last = None
    days = []
    for _ in range(3):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None
        start = pendulum.instance(info.data_interval.start).in_timezone(TZ)
        end = pendulum.instance(info.data_interval.end).in_timezone(TZ)
        assert (end - start).in_hours() == 24 and (start.hour, start.minute, end.hour, end.minute) == (
            0,
            0,
            0,
            0,
        )
        assert info.run_after == end.add(hours=6, minutes=30)  # the morning after the day, local time
        days.append(start.date().isoformat())
        last = info.data_interval
    assert days == ["2026-11-01", "2026-11-02", "2026-11-03"]
