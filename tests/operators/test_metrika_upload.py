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
    csv_rows,
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


# ------------------------------------------------------------------ streaming (issue 10)


def _day_of_calls(day: date, first_id: int, count: int, *, extra: list[Any] = ()) -> list[Any]:
    """Well-formed calls of ``day`` (noon UTC onwards, one a minute), then ``extra`` items as given."""
    from datetime import UTC, datetime, time

    start = int(datetime.combine(day, time(9, 0), tzinfo=UTC).timestamp())
    calls = [
        {
            "callId": first_id + i,
            "timestamp": start + 60 * i,
            "yaClientId": str(1_700_000_000_000_000_000 + first_id + i) if i % 5 else None,
            "duration": i,
            "successful": bool(i % 2),
            "callerNumber": f"7999{first_id + i:07d}",
            "sessionId": i or None,
            "callTags": [{"names": [f"tag {i % 3}"]}],
            "callUrl": f"https://example.ru/{i}",
        }
        for i in range(count)
    ]
    return [*calls, *extra]


def _write_extract(root: Path, day: date, parts: list[list[Any]]) -> dict[str, Any]:
    """The extract's XCom for ``parts`` written as one Parquet file each (as a multi-day extract does)."""
    import pyarrow.parquet as pq

    from calltouch_metrika import storage
    from calltouch_metrika.transforms.records import calls_to_table

    paths = []
    for n, records in enumerate(parts):
        path = storage.calls_path(str(root), SITE_ID, f"{day.isoformat()}-part{n}")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(calls_to_table(records), Path(path.path), row_group_size=4)
        paths.append(str(path))
    nxt = date.fromordinal(day.toordinal() + 1)
    return {"paths": paths, "path": paths[0], "site_id": SITE_ID, "date_from": str(day), "date_to": str(nxt)}


@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [1, 3, 65_536])
def test_streamed_upload_equals_the_whole_day_transform(sandbox, tmp_path: Path, batch_size: int) -> None:
    """Record batches across two files: duplicates across batches and files, a non-object item and bad
    values are rejected exactly as the whole-day transform does; the CSV on storage is byte-identical to
    it, the sandbox stores those rows, and the rejects dataset holds every reject with its reason."""
    from datetime import UTC, datetime

    import pandas as pd

    from calltouch_metrika.transforms.calls import TransformOptions, calls_to_metrika, metrika_csv_bytes
    from calltouch_metrika.transforms.records import calls_to_table

    day = recent_day()
    first = _day_of_calls(day, 1, 20, extra=[None, {"callId": 3, "timestamp": 1}, "str"])
    second = _day_of_calls(day, 15, 12, extra=[[], {"callId": 40, "yaClientId": "99999999999999999999"}])
    extract = _write_extract(tmp_path, day, [first, second])
    out = _upload_op(tmp_path, extract, batch_size=batch_size).execute({})

    whole = calls_to_metrika(
        calls_to_table(first + second), TransformOptions(site_id=SITE_ID), now=datetime.now(UTC)
    )
    counts = whole.counts
    assert (out["extracted"], out["uploaded"], out["rejected"]) == (
        counts.extracted,
        counts.uploaded,
        counts.rejected,
    )
    assert out["extracted"] == 37 == out["uploaded"] + out["rejected"]
    assert out["rejects_by_reason"] == counts.rejects_by_reason
    assert out["rejects_by_reason"]["duplicate_call"] == 7  # callIds 15..20 of the second file, and 3
    assert out["rejects_by_reason"]["malformed_record"] == 3
    csv_bytes = Path(out["csv_path"].removeprefix("file://")).read_bytes()
    assert csv_bytes == metrika_csv_bytes(whole.upload)
    (upload,) = sandbox.state()["uploads"]
    assert upload["id"] == out["upload_id"]
    assert clean_rows(upload["rows"]) == csv_rows(csv_bytes)
    rejects = pd.read_parquet(out["rejects_path"].removeprefix("file://"))
    assert len(rejects) == out["rejected"]
    assert rejects["reason"].tolist() == whole.rejects["reason"].tolist()
    assert rejects["callId"].tolist() == whole.rejects["callId"].tolist()
    assert not list(Path(out["csv_path"].removeprefix("file://")).parent.glob(".*tmp*"))  # moved, not left


@pytest.mark.integration
def test_a_failed_build_leaves_no_partial_csv_or_rejects(tmp_path: Path) -> None:
    """The CSV and the rejects are written to temporary files and moved only when complete."""
    day = recent_day()
    extract = _write_extract(tmp_path, day, [_day_of_calls(day, 1, 10)])
    broken = Path(extract["path"].removeprefix("file://"))
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # a truncated Parquet file
    with pytest.raises(Exception, match=r"(?i)parquet"):
        _upload_op(tmp_path, extract, dry_run=True).execute({})
    written = (
        [p for p in (tmp_path / "metrika").rglob("*") if p.is_file()]
        if (tmp_path / "metrika").exists()
        else []
    )
    assert written == []


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        _upload_op(Path("/nonexistent"), {}, batch_size=0)
