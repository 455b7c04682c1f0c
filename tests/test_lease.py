"""The per-counter lease (lease.py): exclusive, renewed while held, taken over after a crash.

Processes are real (``python -c`` children importing the package), the storage root is a real
folder (and ``memory://`` for the fsspec path): nothing of ours is mocked.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from calltouch_metrika import storage
from calltouch_metrika.lease import (
    CounterBusyError,
    CounterLease,
    LeaseLostError,
    LeaseUnsupportedError,
    create_exclusive,
)

REPO = Path(__file__).resolve().parent.parent


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_acquire_release_and_next_generation(tmp_path: Path) -> None:
    root = str(tmp_path)
    with CounterLease(root, 20001, ttl=30, wait=1, holder="first") as lease:
        assert lease.generation == 1
        info = json.loads((tmp_path / "metrika/locks/counter=20001/lease-000000000001.json").read_text())
        assert info["holder"] == "first" and info["expires_at"] > time.time()
        lease.check()
    with CounterLease(root, 20001, ttl=30, wait=1) as again:
        assert again.generation == 2 and again.took_over is None
    # superseded generations are cleaned up; the newest lease and its release marker stay
    names = sorted(p.name for p in (tmp_path / "metrika/locks/counter=20001").iterdir())
    assert names == ["lease-000000000002.json", "released-000000000002.json"]


def test_counters_are_independent(tmp_path: Path) -> None:
    with CounterLease(str(tmp_path), 1, wait=0.2), CounterLease(str(tmp_path), 2, wait=0.2) as other:
        assert other.generation == 1


def test_busy_counter_waits_then_says_who_holds_it(tmp_path: Path) -> None:
    with CounterLease(str(tmp_path), 20001, ttl=30, holder="run A"):
        started = time.monotonic()
        with pytest.raises(CounterBusyError, match="run A holds its lease") as err:
            CounterLease(str(tmp_path), 20001, wait=0.6, poll=0.1).acquire()
        assert time.monotonic() - started >= 0.6
        assert "retrying later is safe" in str(err.value)


def test_waiter_gets_the_lease_when_the_holder_releases(tmp_path: Path) -> None:
    first = CounterLease(str(tmp_path), 7, ttl=30).acquire()
    threading.Timer(0.5, first.release).start()
    second = CounterLease(str(tmp_path), 7, wait=10, poll=0.1).acquire()
    try:
        assert second.generation == 2 and second.waited >= 0.4 and second.took_over is None
    finally:
        second.release()


def test_renewal_keeps_a_long_holder_alive(tmp_path: Path) -> None:
    with CounterLease(str(tmp_path), 5, ttl=0.9, holder="slow") as lease:
        time.sleep(2.5)  # almost three ttl: only the renewal thread keeps it
        lease.check()
        with pytest.raises(CounterBusyError):
            CounterLease(str(tmp_path), 5, wait=0.3, poll=0.1).acquire()


def test_a_holder_that_stops_renewing_loses_the_counter_and_knows_it(tmp_path: Path) -> None:
    stale = CounterLease(str(tmp_path), 5, ttl=0.5, renew=False, holder="frozen").acquire()
    time.sleep(0.7)
    with CounterLease(str(tmp_path), 5, wait=2, poll=0.1) as fresh:
        assert fresh.generation == 2
        assert fresh.took_over is not None and fresh.took_over.holder == "frozen"
        with pytest.raises(LeaseLostError, match="another run took the counter over"):
            stale.check()
        with pytest.raises(LeaseLostError):
            stale.renew_now()
    stale.release()  # no release marker for a lost generation; nothing breaks


def test_a_crashed_holder_blocks_at_most_ttl(tmp_path: Path) -> None:
    # The child takes the lease and dies without releasing it (os._exit: no cleanup, no renewal).
    child = _child(
        """
        import os, sys
        from calltouch_metrika.lease import CounterLease
        CounterLease(sys.argv[1], 20001, ttl=3, holder="doomed").acquire()
        print("held", flush=True)
        os._exit(9)
        """,
        str(tmp_path),
    )
    out, err = child.communicate(timeout=120)
    assert child.returncode == 9 and "held" in out, err
    started = time.monotonic()
    with pytest.raises(CounterBusyError):
        CounterLease(str(tmp_path), 20001, wait=0.5, poll=0.1).acquire()
    with CounterLease(str(tmp_path), 20001, wait=10, poll=0.2) as lease:
        assert lease.took_over is not None and lease.took_over.holder == "doomed"
    assert time.monotonic() - started <= 3.5 + 2


def test_two_processes_never_hold_the_counter_at_once(tmp_path: Path) -> None:
    """Real contention: each child does read-modify-write of a shared file 15 times under the lease."""
    counter_file = tmp_path / "n.txt"
    counter_file.write_text("0")
    intervals = tmp_path / "intervals"
    intervals.mkdir()
    code = """
        import sys, time
        from pathlib import Path
        from calltouch_metrika.lease import CounterLease
        root, name = sys.argv[1], sys.argv[2]
        n_file = Path(root) / "n.txt"
        spans = []
        for _ in range(15):
            with CounterLease(root, 20001, ttl=10, wait=120, poll=0.02, holder=name):
                t0 = time.time()
                n = int(n_file.read_text())
                time.sleep(0.01)
                n_file.write_text(str(n + 1))
                spans.append(f"{t0} {time.time()}")
        (Path(root) / "intervals" / name).write_text("\\n".join(spans))
        """
    children = [_child(code, str(tmp_path), f"p{i}") for i in range(3)]
    for c in children:
        _out, err = c.communicate(timeout=300)
        assert c.returncode == 0, err
    assert counter_file.read_text() == "45"  # no lost update
    spans = sorted(
        tuple(map(float, line.split())) for f in intervals.iterdir() for line in f.read_text().splitlines()
    )
    assert len(spans) == 45
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two holders overlapped"


@pytest.fixture
def memory_root() -> str:
    """A ``memory://`` root: Airflow registers only providers' schemes, so attach fsspec's memory fs."""
    from airflow.sdk.io import attach

    attach("memory", fs=MemoryFileSystem())
    return "memory://lease-test"


def test_memory_filesystem_uses_its_conditional_create(memory_root: str) -> None:
    root = memory_root
    path = storage.root_path(root) / "x.json"
    assert create_exclusive(path, b"1") is True
    assert create_exclusive(path, b"2") is False
    assert path.read_bytes() == b"1"
    held = []

    def contend(i: int) -> None:
        for _ in range(5):
            with CounterLease(root, 3, ttl=10, wait=30, poll=0.01, holder=f"t{i}") as lease:
                held.append(("in", i))
                time.sleep(0.005)
                lease.check()
                held.append(("out", i))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(held) == 30
    for enter, leave in zip(held[::2], held[1::2], strict=True):
        assert enter[0] == "in" and leave == ("out", enter[1])


class _LastWriterWinsFS(MemoryFileSystem):
    protocol = ("lwwtest",)


def test_a_filesystem_without_exclusive_create_is_refused() -> None:
    from airflow.sdk.io import attach

    fsspec.register_implementation("lwwtest", _LastWriterWinsFS, clobber=True)
    attach("lwwtest", fs=_LastWriterWinsFS())
    with pytest.raises(LeaseUnsupportedError, match="no known exclusive create"):
        CounterLease("lwwtest://bucket/root", 1)
    lease = CounterLease("lwwtest://bucket/root", 1, unsafe_protocols_ok=True, renew=False).acquire()
    assert lease.generation == 1
    lease.release()
