"""MetrikaUploadCallsOperator: the comment, idempotency when the upload's answer is lost and Metrika
did not store it, the price and filter options end to end, and LINKAGE_FAILURE fail vs warn."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from calltouch_metrika.operators.calltouch import CalltouchExtractOperator
from calltouch_metrika.operators.metrika import MetrikaUploadCallsOperator, as_bool, upload_comment
from tests.helpers import (
    COUNTER_ID,
    SITE_ID,
    clean_rows,
    expected_upload,
    recent_day,
    run_dag,
    task_states,
    write_config,
    xcom,
)

DAG_ID = "calltouch_calls_to_metrika__e2e"


def test_comment_is_deterministic_short_and_plain() -> None:
    one = upload_comment("demo", 10001, date(2026, 11, 23), date(2026, 11, 24))
    assert one == "calltouch-metrika demo site 10001 2026-11-23"
    assert upload_comment("demo", 10001, date(2026, 11, 23), date(2026, 11, 24)) == one
    week = upload_comment("demo", 10001, date(2026, 11, 16), date(2026, 11, 23))
    assert week == "calltouch-metrika demo site 10001 2026-11-16 to 2026-11-22"
    longest = upload_comment("x" * 64, 10**12, date(2026, 1, 1), date(2026, 12, 31))
    for comment in (one, week, longest):
        assert len(comment) <= 255
        assert re.fullmatch(r"[A-Za-z0-9 _-]+", comment)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("True", True), ("false", False), ("", False), (None, False), ("1", True)],
)
def test_as_bool_reads_rendered_templates(value: Any, expected: bool) -> None:
    assert as_bool(value, "dry_run") is expected


def test_as_bool_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        as_bool("maybe", "dry_run")


def _upload_op(root: Path, extract: dict, **kw: Any) -> MetrikaUploadCallsOperator:
    return MetrikaUploadCallsOperator(
        task_id="upload",
        pipeline="direct",
        extract=extract,
        counter_id=COUNTER_ID,
        storage_root=str(root),
        **kw,
    )


@pytest.mark.integration
def test_lost_answer_is_resolved_by_the_part_comment_and_retries_upload_nothing(
    sandbox, tmp_path: Path
) -> None:
    # (An upload that got no answer and was NOT stored: tests/test_exactly_once.py, at the sender.)
    day = recent_day()
    extract = CalltouchExtractOperator(
        task_id="extract", site_id=SITE_ID, storage_root=str(tmp_path), date_from=day.isoformat()
    ).execute({})
    sandbox.faults(lose_upload_response=1, scope="metrika")
    first = _upload_op(tmp_path, extract, lookup_delay=0.01).execute({})
    second = _upload_op(tmp_path, extract).execute({})
    uploads = sandbox.state()["uploads"]
    assert len(uploads) == 1
    assert first["upload_id"] == second["upload_id"] == uploads[0]["id"]
    assert (first["reused"], second["reused"]) == (False, True)
    assert (first["uploaded"], second["uploaded"]) == (uploads[0]["source_quantity"], 0)
    assert second["already_sent"] == first["uploaded"]
    assert uploads[0]["comment"] == f"calltouch-metrika direct site {SITE_ID} {day} part 1"


@pytest.mark.integration
def test_extract_xcom_must_be_a_dict(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"extract_task\.output"):
        _upload_op(tmp_path, "not a dict").execute({})


@pytest.mark.integration
@pytest.mark.airflow
def test_target_calls_at_a_fixed_price(
    sandbox, airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.utils.state import DagRunState

    pipeline = write_config(
        tmp_path,
        monkeypatch,
        site_id=10002,
        counter_id=20002,
        filters={"target_only": True, "with_call_tags": True},
        price={"mode": "fixed", "value": 1500, "currency": "RUB"},
        new_goal_name="Звонок",
    )
    day = recent_day()
    dr = run_dag(DAG_ID, day)
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    (upload,) = sandbox.state()["uploads"]
    assert upload["counter_id"] == 20002 and upload["new_goal_name"] == "Звонок"
    assert "Price" in upload["columns"] and "Currency" in upload["columns"]
    expected_rows, counts = expected_upload(pipeline, day)
    assert 0 < counts.extracted < 150  # target calls only
    assert clean_rows(upload["rows"]) == expected_rows
    assert {r["Price"] for r in expected_rows} == {"1500.00"} and {r["Currency"] for r in expected_rows} == {
        "RUB"
    }


@pytest.mark.integration
@pytest.mark.airflow
@pytest.mark.parametrize(
    ("mode", "dag_state", "wait_state"), [("fail", "failed", "failed"), ("warn", "success", "success")]
)
def test_linkage_failure_fails_or_warns(
    sandbox,
    airflow_db,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    dag_state: str,
    wait_state: str,
) -> None:
    # sessionId as a UserId: well-formed, but unknown to the counter -> Metrika ends in LINKAGE_FAILURE
    write_config(
        tmp_path, monkeypatch, identifier={"type": "UserId", "field": "sessionId"}, on_linkage_failure=mode
    )
    dr = run_dag(DAG_ID, recent_day())
    states = task_states(dr)
    assert (str(dr.state), states["upload"], states["wait"]) == (dag_state, "success", wait_state), states
    (upload,) = sandbox.state()["uploads"]
    assert upload["status"] == "LINKAGE_FAILURE" and upload["client_id_type"] == "USER_ID"
    if mode == "warn":
        assert xcom(dr, "wait")["status"] == "LINKAGE_FAILURE"
