"""The linkage dataset's pure parts (one row per upload; the merge per day) and its write-once files."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from calltouch_metrika.linkage.dataset import (
    LinkageUpload,
    daily_rows,
    linkage_row,
    read_rows,
    reason_column,
    write_linkage,
)

DAY = date(2026, 11, 20)
T0 = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


def _upload(
    upload_id: int | None,
    *,
    extracted: int = 100,
    uploaded: int = 80,
    reasons: dict[str, int] | None = None,
    kind: str = "first",
    linked: int | None = 50,
    status: str = "PROCESSED",
    run: str = "scheduled__1",
    **record: Any,
) -> LinkageUpload:
    reasons = {"missing_identifier": extracted - uploaded} if reasons is None else reasons
    uploading = None
    if upload_id is not None:
        uploading = {
            "id": upload_id,
            "status": status,
            "create_time": "2026-11-21T05:59:00Z",
            "source_quantity": uploaded,
            "line_quantity": uploaded - 2,
            "static_calls_quantity": 5,
            "dynamic_calls_quantity": uploaded - 7,
            **({"linked_quantity": linked} if linked is not None else {}),
            **record,
        }
    return LinkageUpload(
        pipeline="p",
        counter_id=20001,
        site_id=10001,
        day=DAY,
        day_to=DAY,
        dag_id="calltouch_calls_to_metrika__p",
        run_id=run,
        counts={
            "extracted": extracted,
            "uploaded": uploaded if upload_id else 0,
            "rejected": sum(reasons.values()),
            "rejects_by_reason": reasons,
        },
        uploading=uploading,
        upload_kind=kind,
        uploaded=uploaded if upload_id else None,
    )


def test_row_of_a_final_upload() -> None:
    row = linkage_row(_upload(7, goal_not_found_quantity=0, duplicate_quantity=3, type="BASIC"), now=T0)
    assert row["upload_id"] == 7 and row["upload_kind"] == "first" and row["status"] == "PROCESSED"
    assert (row["extracted"], row["uploaded"], row["rejected"], row["already_uploaded"]) == (100, 80, 20, 0)
    assert row["rejected_missing_identifier"] == 20 and row["rejected_duplicate_call"] == 0
    assert (row["source_quantity"], row["line_quantity"], row["linked_quantity"]) == (80, 78, 50)
    assert row["goal_not_found_quantity"] == 0 and row["user_not_found_quantity"] is None
    assert row["other_quantities"] == {"duplicate_quantity": 3}  # any quantity Metrika adds is kept
    assert row["seconds_to_final"] == 60.0
    assert row["linked_share"] == pytest.approx(50 / 78)


def test_row_refuses_unreconciled_counts_and_unfinished_uploads() -> None:
    with pytest.raises(ValueError, match="do not reconcile"):
        linkage_row(_upload(7, reasons={"missing_identifier": 21}), now=T0)
    with pytest.raises(ValueError, match="not final"):
        linkage_row(_upload(7, status="MATCHED"), now=T0)
    with pytest.raises(ValueError, match="not a reject reason"):
        reason_column("Bad Reason")


def test_day_with_nothing_uploaded() -> None:
    row = linkage_row(_upload(None, extracted=4, uploaded=0), now=T0)
    assert row["upload_id"] is None and row["upload_kind"] == "none" and row["status"] is None
    assert row["linked_share"] is None and row["seconds_to_final"] is None


def test_merge_first_upload_and_top_up_of_a_day() -> None:
    first = linkage_row(_upload(1, run="scheduled__d1"), now=T0)
    topup = linkage_row(
        _upload(
            2,
            extracted=130,
            uploaded=30,
            reasons={"missing_identifier": 20},
            kind="topup",
            linked=10,
            run="scheduled__d2",
        ),
        now=T0 + timedelta(days=1),
    )
    (day,) = daily_rows([topup, first])
    assert day["day"] == DAY.isoformat() and day["upload_ids"] == [1, 2] and day["uploads"] == 2
    assert day["extracted"] == 130 and day["already_uploaded"] == 80  # the latest extraction of the day
    assert (day["uploaded"], day["uploaded_first"], day["uploaded_topups"]) == (110, 80, 30)
    assert day["rejected_by_reason"] == {"missing_identifier": 20}
    assert (day["source_quantity"], day["line_quantity"], day["linked_quantity"]) == (110, 106, 60)
    assert day["linked_share"] == pytest.approx(60 / 106) and day["status"] == "PROCESSED"
    assert [r["run_id"] for r in day["runs"]] == ["scheduled__d2", "scheduled__d1"]


def test_merge_says_when_metrika_gave_no_linked_quantity() -> None:
    (day,) = daily_rows([linkage_row(_upload(1, linked=None), now=T0)])
    assert day["linked_quantity"] is None and day["linked_share"] is None and day["line_quantity"] == 78


def test_files_are_written_once_per_upload(tmp_path: Path) -> None:
    root = str(tmp_path)
    first = linkage_row(_upload(1), now=T0)
    path, written = write_linkage(root, first)
    assert written and path.name == "p.upload-1.parquet" and path.parent.name == f"date={DAY}"
    later = linkage_row(_upload(1), now=T0 + timedelta(hours=5))
    assert write_linkage(root, later) == (path, False)  # the first observation stays
    (row,) = read_rows(root, pipeline="p", counter_id=20001, first=DAY, last=DAY)
    assert row["final_status_at"] == T0 and row["seconds_to_final"] == 60.0

    empty = linkage_row(_upload(None, extracted=3, uploaded=0), now=T0)
    p1, w1 = write_linkage(root, empty)
    p2, w2 = write_linkage(root, linkage_row(_upload(None, extracted=5, uploaded=0), now=T0))
    assert p1 == p2 and w1 and w2 and p1.name == "p.no-upload.parquet"  # a re-run of an empty day replaces it
    rows = read_rows(root, pipeline="p", counter_id=20001, first=DAY, last=DAY)
    assert sorted(r["extracted"] for r in rows) == [5, 100]
    assert read_rows(root, pipeline="other", counter_id=20001, first=DAY, last=DAY) == []
    assert (
        read_rows(
            root, pipeline="p", counter_id=20001, first=DAY + timedelta(days=1), last=DAY + timedelta(days=2)
        )
        == []
    )
