"""How the calls DAG publishes its datasets: the extract's calls Asset, the report teardown's linkage Asset."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sensors.calls_pipeline import load_dag
from tests.sensors.calls_pipeline import write_config as _write_config


def test_report_is_a_teardown_publishing_the_linkage_asset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import Asset

    pipeline = _write_config(tmp_path, monkeypatch, name="wired")
    dag = load_dag("calltouch_calls_to_metrika__wired")
    extract, report = dag.get_task("extract"), dag.get_task("report")
    assert report.is_teardown and not report.on_failure_fail_dagrun  # never decides the run's state
    assert report.upstream_task_ids == {"wait"}
    (calls,) = extract.outlets
    (linkage,) = report.outlets
    assert isinstance(calls, Asset) and isinstance(linkage, Asset)
    assert (calls.name, calls.uri) == ("calltouch_calls__wired", "calltouch-metrika://wired/calls")
    assert (linkage.name, linkage.uri) == ("metrika_linkage__wired", "calltouch-metrika://wired/linkage")
    root = Path(pipeline["storage_root"]).resolve().as_uri()
    assert calls.extra["path"] == f"{root}/calltouch/calls/site=10001"
    assert linkage.extra["path"] == f"{root}/metrika/linkage/counter=20001"
    assert report.storage_root == pipeline["storage_root"] and report.pipeline == "wired"


def test_asset_path_has_no_connection_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config(tmp_path, monkeypatch, name="lake", storage_root="s3://aws_lake@bucket/raw")
    dag = load_dag("calltouch_calls_to_metrika__lake")
    assert dag.get_task("report").outlets[0].extra["path"] == "s3://bucket/raw/metrika/linkage/counter=20001"
