"""The per-counter call ledger (ledger.py): immutable parts, states, a Parquet dataset for audits.

The last test runs the ledger's intended critical section ("compute what is new -> send -> record")
in three real processes under the counter's lease: every call is sent exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from calltouch_metrika.ledger import (
    SCHEMA,
    CallLedger,
    PartKey,
    call_ids_from_csv,
    legacy_comment,
    parse_part_file,
    part_comment,
)

REPO = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 23)


def test_comments_are_deterministic_and_metrika_safe() -> None:
    assert part_comment("demo", 10001, DAY, 2) == "calltouch-metrika demo site 10001 2026-11-23 part 2"
    assert legacy_comment("demo", 10001, DAY) == "calltouch-metrika demo site 10001 2026-11-23"
    with pytest.raises(ValueError, match="longer than 255"):
        part_comment("x" * 300, 1, DAY, 1)


def test_states_parts_and_held_calls(tmp_path: Path) -> None:
    led = CallLedger(str(tmp_path), 20001)
    assert led.next_part("demo", DAY) == 1 and not led.held_calls()
    k1 = PartKey("demo", DAY, 1)
    c1 = part_comment("demo", 10001, DAY, 1)
    assert led.record(k1, "sending", site_id=10001, call_ids=[1, 2, 3], comment=c1)
    assert [p.key for p in led.pending()] == [k1]
    assert led.held_call_ids(10001) == {1, 2, 3}  # a part being sent already counts
    assert led.record(k1, "sent", site_id=10001, call_ids=[1, 2, 3], comment=c1, upload_id=501)
    assert not led.pending() and [p.upload_id for p in led.unconfirmed()] == [501]
    assert led.next_part("demo", DAY) == 2 and led.next_part("other", DAY) == 1
    # part 2 was never stored by Metrika: its calls are free again
    k2 = PartKey("demo", DAY, 2)
    led.record(k2, "sending", site_id=10001, call_ids=[4, 5], comment=part_comment("demo", 10001, DAY, 2))
    led.record(k2, "failed", site_id=10001, call_ids=[4, 5], comment=part_comment("demo", 10001, DAY, 2))
    assert led.held_call_ids(10001) == {1, 2, 3}
    assert led.parts()[k2].state == "failed" and led.next_part("demo", DAY) == 3
    led.record(
        k1, "confirmed", site_id=10001, call_ids=[1, 2, 3], comment=c1, upload_id=501, status="PROCESSED"
    )
    st = led.parts()[k1]
    assert (st.state, st.status, st.call_ids) == ("confirmed", "PROCESSED", (1, 2, 3))
    # the same callId on another site of the same counter is another call
    led.record(PartKey("b", DAY, 1), "sent", site_id=10002, call_ids=[1], comment="c", upload_id=9)
    assert led.held_calls() == {(10001, 1), (10001, 2), (10001, 3), (10002, 1)}
    assert led.held_call_ids(10002) == {1}


def test_part_files_are_written_once(tmp_path: Path) -> None:
    led = CallLedger(str(tmp_path), 20001)
    key = PartKey("demo", DAY, 1)
    assert led.record(key, "sent", site_id=1, call_ids=[1, 2], comment="c", upload_id=7)
    path = led.part_path(key, "sent")
    before = path.read_bytes()
    assert not led.record(key, "sent", site_id=1, call_ids=[1, 2, 3], comment="c", upload_id=8)
    assert path.read_bytes() == before
    assert parse_part_file(path.name) == (key, "sent")
    assert path.name == "2026-11-23.demo.part0001.sent.parquet"
    with pytest.raises(ValueError, match="needs the upload id"):
        led.record(PartKey("demo", DAY, 2), "sent", site_id=1, call_ids=[1], comment="c")
    with pytest.raises(ValueError, match="unknown ledger state"):
        led.record(PartKey("demo", DAY, 2), "lost", site_id=1, call_ids=[1], comment="c")


def test_the_ledger_reads_as_one_parquet_dataset(tmp_path: Path) -> None:
    led = CallLedger(str(tmp_path), 20001)
    led.record(PartKey("demo", DAY, 1), "sent", site_id=1, call_ids=[1, 2], comment="a", upload_id=7)
    led.record(
        PartKey("demo", DAY, 2), "sent", site_id=1, call_ids=[3], comment="b", upload_id=8, forced=True
    )
    table = ds.dataset(str(tmp_path / "metrika/ledger/counter=20001"), format="parquet").to_table()
    assert table.schema.equals(SCHEMA)
    assert sorted(table.column("call_id").to_pylist()) == [1, 2, 3]
    assert sorted(table.column("forced").to_pylist()) == [False, False, True]


def test_compaction_keeps_every_state(tmp_path: Path) -> None:
    led = CallLedger(str(tmp_path), 20001)
    for part in (1, 2, 3):
        key = PartKey("demo", DAY, part)
        led.record(key, "sending", site_id=1, call_ids=[part], comment=str(part))
        if part != 3:
            led.record(key, "sent", site_id=1, call_ids=[part], comment=str(part), upload_id=part)
    before = led.parts()
    assert led.compact() == 5
    assert len(led.files()) == 1 and led.files()[0].name.startswith("compacted-")
    assert led.parts() == before
    assert [p.key.part for p in led.pending()] == [3]


def test_memory_root() -> None:
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    led = CallLedger("memory://ledger-test/root", 42)
    led.record(PartKey("demo", DAY, 1), "sent", site_id=1, call_ids=[10, 11], comment="c", upload_id=1)
    assert CallLedger("memory://ledger-test/root", 42).held_call_ids(1) == {10, 11}


def test_call_ids_come_back_from_the_csv_we_wrote() -> None:
    csv = (
        b"ClientId,DateTime,CallTrackerURL\n"
        b"1,1700000000,https://my.calltouch.ru/accounts/10001/calls-log?callId=555\n"
        b"2,1700000001,https://my.calltouch.ru/accounts/10001/calls-log?callId=556\n"
    )
    assert call_ids_from_csv(csv) == [555, 556]
    assert call_ids_from_csv(b"ClientId,DateTime\n1,2\n") is None
    assert call_ids_from_csv(b"ClientId,CallTrackerURL\n1,\n") is None


def test_three_processes_send_each_call_once(tmp_path: Path) -> None:
    """The critical section as the upload task runs it, in three processes at once."""
    code = """
        import sys, time
        from datetime import date
        from pathlib import Path
        from calltouch_metrika.lease import CounterLease
        from calltouch_metrika.ledger import CallLedger, PartKey
        root, name = sys.argv[1], sys.argv[2]
        day = date(2026, 11, 23)
        calls = set(range(1, 101))
        with CounterLease(root, 20001, ttl=10, wait=120, poll=0.05, holder=name) as lease:
            led = CallLedger(root, 20001)
            new = sorted(calls - led.held_call_ids(10001))
            if new:
                key = PartKey(name, day, led.next_part(name, day))
                led.record(key, "sending", site_id=10001, call_ids=new, comment=name)
                lease.check()
                time.sleep(0.5)  # a slow Metrika
                with open(Path(root) / "sent.log", "a") as fh:
                    fh.write("".join(f"{c}\\n" for c in new))
                led.record(key, "sent", site_id=10001, call_ids=new, comment=name, upload_id=1)
        """
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(tmp_path), f"p{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for c in children:
        _, err = c.communicate(timeout=300)
        assert c.returncode == 0, err
    sent = [int(x) for x in (tmp_path / "sent.log").read_text().split()]
    assert sorted(sent) == list(range(1, 101))
    assert CallLedger(str(tmp_path), 20001).held_call_ids(10001) == set(range(1, 101))
