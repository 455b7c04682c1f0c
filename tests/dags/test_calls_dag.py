"""The calls DAG end to end: the real DAG file, real Airflow (``dag.test()``), the sandbox over HTTP.

Each test writes its own pipelines file (``CALLTOUCH_METRIKA_CONFIG``) and asserts what the sandbox
received, row by row, against the transform applied to the sandbox's own records for the fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    COUNTER_ID,
    SITE_ID,
    clean_rows,
    csv_rows,
    expected_upload,
    recent_day,
    run_dag,
    task_states,
    xcom,
)
from tests.helpers import write_config as _write_config

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "calltouch_calls_to_metrika__e2e"


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox, airflow_db) -> dict:
    return _write_config(tmp_path, monkeypatch)


def test_daily_run_uploads_every_call_once_row_by_row(
    pipeline: dict, sandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.utils.state import DagRunState

    day = recent_day()
    dr = run_dag(DAG_ID, day)
    out, err = capfd.readouterr()
    logged = out + err
    # the task logs end with readable summaries, and carry no token
    assert "Extract summary: site 10001" in logged
    assert "= uploaded" in logged and "rejected" in logged
    assert "finished: status PROCESSED" in logged
    assert "sandbox-ct-token" not in logged and "sandbox-ym-token" not in logged
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    assert task_states(dr) == {
        "extract": "success",
        "upload": "success",
        "wait": "success",
        "report": "success",
    }

    expected_rows, counts = expected_upload(pipeline, day)
    assert counts.extracted == 150 and counts.uploaded > 0
    (upload,) = sandbox.state()["uploads"]
    assert upload["counter_id"] == COUNTER_ID
    assert upload["comment"] == f"calltouch-metrika e2e site {SITE_ID} {day.isoformat()} part 1"
    assert upload["client_id_type"] == "CLIENT_ID"
    assert upload["columns"][:2] == ["ClientId", "DateTime"]
    assert clean_rows(upload["rows"]) == expected_rows
    assert upload["status"] == "PROCESSED"
    assert upload["source_quantity"] == upload["line_quantity"] == counts.uploaded

    extracted = xcom(dr, "extract")
    assert extracted["rows"] == counts.extracted
    assert extracted["date_from"] == day.isoformat() and extracted["site_id"] == SITE_ID
    assert Path(extracted["path"].removeprefix("file://")).is_file()

    uploaded = xcom(dr, "upload")
    assert uploaded["upload_id"] == upload["id"] and uploaded["reused"] is False
    assert (uploaded["extracted"], uploaded["uploaded"], uploaded["rejected"]) == (
        counts.extracted,
        counts.uploaded,
        counts.rejected,
    )
    assert uploaded["rejects_by_reason"] == dict(counts.rejects_by_reason)
    assert uploaded["extracted"] == uploaded["uploaded"] + uploaded["rejected"]
    csv_file = Path(uploaded["csv_path"].removeprefix("file://"))
    assert csv_file == (
        Path(pipeline["storage_root"]) / f"metrika/uploads/counter={COUNTER_ID}/date={day}/e2e.part0001.csv"
    )
    assert csv_rows(csv_file.read_bytes()) == expected_rows
    assert Path(uploaded["rejects_path"].removeprefix("file://")).is_file()

    final = xcom(dr, "wait")
    assert final["id"] == upload["id"] and final["status"] == "PROCESSED"


def test_same_day_three_times_is_one_upload(pipeline: dict, sandbox) -> None:
    from airflow.utils.state import DagRunState

    day = recent_day()
    ids = []
    for _ in range(3):
        dr = run_dag(DAG_ID, day)
        assert dr.state == DagRunState.SUCCESS, task_states(dr)
        ids.append(xcom(dr, "upload")["upload_id"])
    uploads = sandbox.state()["uploads"]
    assert len(uploads) == 1
    assert ids == [uploads[0]["id"]] * 3
    assert xcom(dr, "upload")["reused"] is True


def test_lost_upload_response_yields_exactly_one_upload(pipeline: dict, sandbox) -> None:
    from airflow.utils.state import DagRunState

    sandbox.faults(lose_upload_response=1, scope="metrika")
    day = recent_day()
    dr = run_dag(DAG_ID, day)
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    uploads = sandbox.state()["uploads"]
    assert len(uploads) == 1
    assert xcom(dr, "upload")["upload_id"] == uploads[0]["id"]
    expected_rows, _ = expected_upload(pipeline, day)
    assert clean_rows(uploads[0]["rows"]) == expected_rows


def test_dry_run_builds_the_csv_and_uploads_nothing(pipeline: dict, sandbox) -> None:
    from airflow.utils.state import DagRunState

    day = recent_day()
    dr = run_dag(DAG_ID, day, conf={"dry_run": True})
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    assert task_states(dr)["wait"] == "skipped"
    assert sandbox.state()["uploads"] == []
    out = xcom(dr, "upload")
    assert out["dry_run"] is True and out["upload_id"] is None
    assert out["uploaded"] == 0 and out["would_upload"] == len(expected_upload(pipeline, day)[0])
    assert f"/metrika/dry_runs/counter={COUNTER_ID}/date={day}/e2e." in out["csv_path"]
    expected_rows, _ = expected_upload(pipeline, day)
    assert csv_rows(Path(out["csv_path"].removeprefix("file://")).read_bytes()) == expected_rows


def test_force_reupload_uploads_again(pipeline: dict, sandbox) -> None:
    from airflow.utils.state import DagRunState

    day = recent_day()
    first = run_dag(DAG_ID, day)
    second = run_dag(DAG_ID, day, conf={"force_reupload": True})
    assert first.state == second.state == DagRunState.SUCCESS
    uploads = sandbox.state()["uploads"]
    assert len(uploads) == 2 and uploads[1]["comment"] == uploads[0]["comment"].replace("part 1", "part 2")
    assert uploads[0]["rows"] == uploads[1]["rows"]
    out = xcom(second, "upload")
    assert out["forced"] is True and out["already_sent"] == 0 and out["uploaded"] == len(uploads[1]["rows"])


def test_empty_day_uploads_nothing_and_skips_the_sensor(pipeline: dict, sandbox) -> None:
    from airflow.utils.state import DagRunState

    day = recent_day()
    sandbox.reset(volume_overrides={f"{SITE_ID}:{day.isoformat()}": 0})
    dr = run_dag(DAG_ID, day)
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    assert task_states(dr) == {
        "extract": "success",
        "upload": "success",
        "wait": "skipped",
        "report": "success",
    }
    assert sandbox.state()["uploads"] == []
    out = xcom(dr, "upload")
    assert (out["extracted"], out["uploaded"], out["rejected"], out["upload_id"]) == (0, 0, 0, None)
    assert xcom(dr, "extract")["rows"] == 0


def test_manual_run_without_logical_date_processes_yesterday(pipeline: dict, sandbox) -> None:
    """A run triggered with no logical date has no data interval: the extract falls back to the local
    day before the run, and no template trips over a missing ``ds``/``data_interval_*``."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from airflow.utils.state import DagRunState

    from tests.helpers import load_dag

    dr = load_dag(DAG_ID).test(logical_date=None)
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    yesterday = datetime.now(ZoneInfo(pipeline["timezone"])).date() - timedelta(days=1)
    assert xcom(dr, "extract")["date_from"] == yesterday.isoformat()
    (upload,) = sandbox.state()["uploads"]
    assert upload["comment"].endswith(f"{yesterday.isoformat()} part 1")
