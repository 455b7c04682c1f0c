"""The storage layout (docs/design.md "Datasets on storage") and atomic writes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from calltouch_metrika import storage


def test_layout_for_a_local_root(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    d = date(2026, 11, 23)
    base = (tmp_path / "data").resolve()
    assert (
        storage.calls_path(root, 10001, d).path
        == f"{base}/calltouch/calls/site=10001/date=2026-11-23/calls.parquet"
    )
    assert (
        storage.requests_path(root, 10001, "2026-11-23").path
        == f"{base}/calltouch/requests/site=10001/date=2026-11-23/requests.parquet"
    )
    assert (
        storage.metrika_csv_path(root, 20001, d, "demo").path
        == f"{base}/metrika/calls_csv/counter=20001/date=2026-11-23/demo.csv"
    )
    assert (
        storage.rejects_path(root, 20001, d, "demo").path
        == f"{base}/metrika/rejects/counter=20001/date=2026-11-23/demo.parquet"
    )
    assert (
        storage.plans_ledger_path(root, 10001, "ab" * 32).path
        == f"{base}/calltouch/plans_ledger/site=10001/{'ab' * 32}.json"
    )
    assert str(storage.calls_path(root, 10001, d)).startswith("file://")


def test_url_roots_keep_their_scheme() -> None:
    assert str(storage.calls_path("s3://bucket/prefix", 1, date(2026, 1, 2))) == (
        "s3://bucket/prefix/calltouch/calls/site=1/date=2026-01-02/calls.parquet"
    )
    assert storage.root_path("file:///tmp/x").path == "/tmp/x"


def test_day_label() -> None:
    assert storage.day_label(date(2026, 11, 23), date(2026, 11, 24)) == "2026-11-23"
    assert storage.day_label(date(2026, 11, 20), date(2026, 11, 24)) == "2026-11-20..2026-11-23"


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    p = storage.calls_path(str(tmp_path), 1, date(2026, 11, 23))
    storage.atomic_write_bytes(p, b"first")
    storage.atomic_write_bytes(p, b"second")
    assert p.read_bytes() == b"second"
    assert [c.name for c in p.parent.iterdir()] == ["calls.parquet"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    p = storage.calls_path(str(tmp_path), 1, date(2026, 11, 23))
    storage.atomic_write_bytes(p, b"good")

    def broken(fh) -> None:
        fh.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        storage.atomic_write(p, broken)
    assert p.read_bytes() == b"good"
    assert [c.name for c in p.parent.iterdir()] == ["calls.parquet"]


def test_atomic_open_publishes_only_on_success(tmp_path: Path) -> None:
    p = storage.root_path(tmp_path) / "x" / "stream.csv"
    with storage.atomic_open(p) as fh:
        fh.write(b"a,b\n")
        assert not p.exists()  # nobody sees a half-written file
        fh.write(b"1,2\n")
    assert p.read_bytes() == b"a,b\n1,2\n"
    with pytest.raises(RuntimeError, match="boom"), storage.atomic_open(p) as fh:
        fh.write(b"partial")
        raise RuntimeError("boom")
    assert p.read_bytes() == b"a,b\n1,2\n"
    assert sorted(c.name for c in p.parent.iterdir()) == ["stream.csv"]


# -- the plans ledger -------------------------------------------------------------------------------


def test_plans_ledger_round_trip_and_mark_succeeded_keeps_the_entry(tmp_path: Path) -> None:
    path = storage.plans_ledger_path(str(tmp_path), 10001, "ab" * 32)
    assert storage.read_plans_ledger_entry(path) is None
    storage.write_plans_ledger_entry(
        path, {"state": "sent", "import_log_id": 7, "file": "p.csv", "rows": [2]}
    )
    assert storage.read_plans_ledger_entry(path) == {
        "state": "sent",
        "import_log_id": 7,
        "file": "p.csv",
        "rows": [2],
    }
    storage.mark_plans_ledger_succeeded(str(path), 7)  # the sensor passes the path as a string (XCom)
    entry = storage.read_plans_ledger_entry(path)
    assert entry is not None
    assert (entry["state"], entry["import_log_id"], entry["file"], entry["rows"]) == (
        "succeeded",
        7,
        "p.csv",
        [2],
    )
    assert entry["succeeded_at"].endswith("+00:00")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_unreadable_plans_ledger_entry_means_send_again(tmp_path: Path, text: str) -> None:
    path = storage.plans_ledger_path(str(tmp_path), 10001, "cd" * 32)
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    assert storage.read_plans_ledger_entry(path) is None
