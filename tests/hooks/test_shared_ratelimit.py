"""The shared Calltouch limiter across real processes, on each shared backend (SQLite file, Redis).

Several OS processes (like Airflow tasks: each its own process) with several threads each ask one
limiter group for starts at once. Their start times (wall clock, one machine) are merged and checked
against what Calltouch counts: at most 5 starts in any rolling second in total, evenly spaced, the
whole rate used, every process served without starving. Redis is a real ``redis-server`` (Debian's
``redis-server`` package, installed by ``tools/system-deps.sh``) on a free loopback port.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calltouch_metrika.hooks._shared_ratelimit import (
    BACKEND_ENV,
    RateLimitBackendError,
    SharedRateLimiter,
    configured_backend,
    describe_backend,
    make_shared_limiter,
    make_store,
    state_key,
)
from tests.helpers import max_in_second

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
EPS = 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private ``redis-server`` on loopback (no persistence), stopped at the end of the module."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server not found (as root, `bash tools/system-deps.sh` installs Debian's redis-server)"
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ratelimit.db'}"
    return request.getfixturevalue("redis_url")


# -- what Calltouch sees -----------------------------------------------------------------------------


def max_in_rolling(starts: list[float], window: float) -> int:
    """Most starts in any closed window ``[t, t + window]`` (stricter than Calltouch's half-open second)."""
    ordered = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] < t - window - EPS:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


WORKER = textwrap.dedent(
    """
    import json, sys, threading, time
    from calltouch_metrika.hooks._shared_ratelimit import make_shared_limiter

    url, group, threads, per_thread, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    limiter = make_shared_limiter(url, "calltouch", group, 5, 1.05, max_in_flight=threads)
    starts = []
    lock = threading.Lock()

    def work():
        for _ in range(per_thread):
            limiter.acquire()
            t = time.time()
            with lock:
                starts.append(t)
            time.sleep(0.05)  # the request
            limiter.release()

    time.sleep(max(0.0, start_at - time.time()))
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    print(json.dumps({"starts": starts, "slots": list(limiter.slots)}))
    """
)


def run_processes(
    url: str, group: str, processes: int, threads: int, per_thread: int
) -> list[dict[str, list[float]]]:
    """Start ``processes`` interpreters that all begin asking at the same instant.

    Each reports ``slots`` (the wall-clock slots the store gave it) and ``starts`` (when ``acquire``
    returned: the slot plus this machine's wake-up latency).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    start_at = time.time() + 3.0  # after every interpreter has imported the module
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, group, str(threads), str(per_thread), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    return results


def test_processes_share_one_limit(backend_url: str) -> None:
    """3 processes x 2 threads x 5 starts: ≤ 5 in any rolling second in total, evenly spaced, at full rate."""
    reports = run_processes(backend_url, "egress-a", processes=3, threads=2, per_thread=5)
    slots = sorted(t for r in reports for t in r["slots"])
    starts = sorted(t for r in reports for t in r["starts"])
    assert len(slots) == len(starts) == 30

    # What the store hands out: one slot per 210 ms across every process, so never 6 in any second.
    slot_gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(slot_gaps) >= 0.209, f"two slots {min(slot_gaps) * 1000:.0f} ms apart"
    assert max_in_rolling(slots, 1.0) <= 5
    # ... and used without gaps: 29 intervals of 210 ms = 6.09 s.
    assert slots[-1] - slots[0] <= 29 * 0.21 + 0.15

    # What Calltouch would see: the slots plus wake-up latency. On this shared 2-core machine a thread
    # can wake tens of ms late, which the 50 ms margin of the 1.05 s window absorbs; still evenly spaced.
    gaps = sorted(b - a for a, b in itertools.pairwise(starts))
    assert gaps[len(gaps) // 2] == pytest.approx(0.21, abs=0.015)
    late = [s - t for s, t in zip(starts, slots, strict=True)]
    assert sorted(late)[len(late) // 2] < 0.03, "acquire returns long after its slot"

    # Fair between processes (first come, first served across them): with 6 threads asking, no thread
    # waits more than 6 slots (1.26 s), so every process starts early, is served all along, and
    # finishes near the others.
    first = slots[0]
    for r in reports:
        mine = sorted(r["slots"])
        assert mine[0] - first < 1.3, "a process waited for its first start while others were served"
        worst_gap = max(b - a for a, b in itertools.pairwise(mine))
        assert worst_gap < 1.3, f"a process went {worst_gap:.2f} s without a start while it was waiting"
        assert slots[-1] - mine[-1] < 1.3, "a process finished long before the others (unfair share)"


def test_groups_are_independent(backend_url: str) -> None:
    """Two egress IPs (two groups) each get the full rate: 10 starts in ~1 s, two paced streams."""
    a = make_shared_limiter(backend_url, "calltouch", "ip-1", 5, 1.05)
    b = make_shared_limiter(backend_url, "calltouch", "ip-2", 5, 1.05)
    try:
        t0 = time.monotonic()
        for _ in range(5):
            a.acquire()
            b.acquire()
        elapsed = time.monotonic() - t0
        assert elapsed < 1.2, f"two groups took {elapsed:.2f} s for 5 starts each: they share a limit"
        assert elapsed > 4 * 0.21 - 0.05
    finally:
        a.close()
        b.close()


def test_async_acquire_is_paced(backend_url: str) -> None:
    """The triggers' path (``aacquire``): 8 coroutines, 12 starts, 210 ms apart, the loop never blocked."""
    limiter = make_shared_limiter(backend_url, "calltouch", "async", 5, 1.05, max_in_flight=3)
    starts: list[float] = []

    async def one() -> None:
        await limiter.aacquire()
        starts.append(time.time())
        await asyncio.sleep(0.05)
        limiter.release()

    async def main() -> float:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(12)))
        t.cancel()
        elapsed = time.monotonic() - t0
        assert ticks > elapsed / 0.01 * 0.5, "the event loop was blocked while waiting for the limiter"
        return elapsed

    try:
        asyncio.run(main())
        slots = sorted(limiter.slots)
        assert min(b - a for a, b in itertools.pairwise(slots)) >= 0.209
        assert max_in_rolling(slots, 1.0) <= 5
        assert len(starts) == 12
    finally:
        limiter.close()


def test_penalize_widens_only_this_process_and_recovers(tmp_path: Path) -> None:
    limiter = make_shared_limiter(f"sqlite:///{tmp_path / 'p.db'}", "calltouch", "g", 5, 1.05)
    try:
        base = limiter.interval
        for _ in range(20):
            limiter.penalize()
        assert limiter.interval == pytest.approx(base * 1.3)
        limiter.acquire()
        t0 = time.monotonic()
        limiter.acquire()
        assert time.monotonic() - t0 >= base * 1.3 - 0.01  # the wider spacing is applied
        for _ in range(20_000):
            limiter.reward()
        assert limiter.interval == pytest.approx(base)
    finally:
        limiter.close()


# -- configuration -----------------------------------------------------------------------------------


def test_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__CALLTOUCH_METRIKA__RATE_LIMIT_BACKEND", "redis://cfg:6379/1")
    assert configured_backend() == "redis://cfg:6379/1"  # Airflow's config when the variable is unset
    monkeypatch.setenv(BACKEND_ENV, "sqlite:////tmp/x.db")
    assert configured_backend() == "sqlite:////tmp/x.db"  # the variable wins
    for in_process in ("", "memory", "memory://", "  "):
        monkeypatch.setenv(BACKEND_ENV, in_process)
        assert configured_backend() is None


def test_bad_backend_urls_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(RateLimitBackendError, match=rf"{BACKEND_ENV}.*absolute path"):
        make_store("sqlite:///relative.db", "k")
    with pytest.raises(RateLimitBackendError, match=rf"{BACKEND_ENV}.*unknown scheme 'memcached'"):
        make_store("memcached://h:11211", "k")


def test_backend_description_has_no_credentials() -> None:
    described = describe_backend("redis://user:s3cr3t-pass@redis.internal:6380/2")
    assert described == "redis://redis.internal:6380/2"
    assert "s3cr3t" not in described
    assert describe_backend(None) == "memory (in-process)"


def test_sqlite_url_forms(tmp_path: Path) -> None:
    """SQLAlchemy's form: ``sqlite:////abs/path.db`` is the absolute ``/abs/path.db``."""
    db = tmp_path / "forms.db"
    store = make_store(f"sqlite:////{str(db).lstrip('/')}", state_key("calltouch", "G"))
    try:
        assert store.path == str(db)  # type: ignore[attr-defined]
    finally:
        store.close()
    assert state_key("calltouch", " Office-IP ") == "calltouch_metrika:ratelimit:calltouch:office-ip"


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SharedRateLimiter(make_store("sqlite:////tmp/never-used-ctm.db", "k"), 0, 1.0)


# -- the hooks, in separate processes, against the sandbox --------------------------------------------

HOOK_WORKER = textwrap.dedent(
    """
    import json, sys
    from datetime import date
    from calltouch_metrika.hooks.calltouch import CalltouchHook

    site, day = int(sys.argv[1]), date.fromisoformat(sys.argv[2])
    # rate_window 1.1 (default 1.05): on this shared 2-core machine a send can leave 50 ms after its
    # slot (CPU and GIL contention), which would put 6 arrivals in one of the sandbox's seconds.
    hook = CalltouchHook(
        "calltouch_default", site_id=site, timeout=30, rate_window=float(sys.argv[3]),
        retry_wait_min=0.05, retry_wait_max=0.2, retry_after_max=1,
    )
    limiter = hook.transport.limiter
    print("ready", flush=True)
    sys.stdin.readline()
    rows = len(hook.get_calls(day, day))
    print(json.dumps({"rows": rows, "limiter": type(limiter).__name__}), flush=True)
    """
)


def _two_extracting_processes(
    sandbox: Any, backend: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Two OS processes (two Airflow tasks, in effect), each a CalltouchHook reading one 5-page day."""
    day = "2026-11-20"
    sandbox.reset(volume_overrides={f"10001:{day}": 4500, f"10002:{day}": 4500})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    env.pop(BACKEND_ENV, None)
    env.pop("AIRFLOW__CALLTOUCH_METRIKA__RATE_LIMIT_BACKEND", None)
    if backend:
        env[BACKEND_ENV] = backend
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOOK_WORKER, str(site), day, "1.1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for site in (10001, 10002)
    ]
    try:
        for p in procs:  # both have imported Airflow and resolved the connection (log lines come first)
            assert p.stdout is not None
            while (line := p.stdout.readline()) and line.strip() != "ready":
                pass
            assert line, f"the worker exited before it was ready: {p.communicate()[1][-3000:]}"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results, sandbox.state()["requests"]


@pytest.mark.integration
def test_two_hook_processes_share_the_limit_through_the_backend(sandbox: Any, tmp_path: Path) -> None:
    """Through the shared backend: 10 pages from two processes, ≤ 5 per second at the sandbox, no 429."""
    results, requests_seen = _two_extracting_processes(sandbox, f"sqlite:///{tmp_path / 'rl.db'}")
    assert [r["rows"] for r in results] == [4500, 4500]
    assert {r["limiter"] for r in results} == {"SharedRateLimiter"}
    times = requests_seen["calltouch_times"]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(sorted(times))]
    assert requests_seen["by_status"] == {"200": 10}, gaps
    assert len(times) == 10
    assert max_in_second(times) <= 5


@pytest.mark.integration
def test_without_a_backend_two_processes_exceed_the_limit(sandbox: Any) -> None:
    """Why the backend exists: two in-process limiters together send more than 5 in some second."""
    results, requests_seen = _two_extracting_processes(sandbox, None)
    assert [r["rows"] for r in results] == [4500, 4500]  # the hooks' retries still get every page
    assert {r["limiter"] for r in results} == {"SlidingWindowLimiter"}
    assert max_in_second(requests_seen["calltouch_times"]) > 5
    assert requests_seen["by_status"].get("429", 0) > 0


def test_get_limiter_shares_calltouch_only_and_per_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The hooks' entry point: Calltouch goes through the backend, per group; Metrika stays in-process."""
    from calltouch_metrika.hooks._ratelimit import SlidingWindowLimiter, get_limiter

    monkeypatch.setenv(BACKEND_ENV, f"sqlite:///{tmp_path / 'g.db'}")
    a = get_limiter("calltouch", "https://api.calltouch.ru", 5.0, group="Office-NAT")
    b = get_limiter("calltouch", "https://other.example", 5.0, group="office-nat")
    c = get_limiter("calltouch", "https://api.calltouch.ru", 5.0, group="dc-2")
    d = get_limiter("calltouch", "https://api.calltouch.ru:443", 5.0)
    m = get_limiter("metrika", "https://api-metrika.yandex.net", 30.0)
    assert isinstance(a, SharedRateLimiter) and a is b  # one group, one limiter, whatever the host
    assert c is not a and isinstance(c, SharedRateLimiter)
    assert isinstance(d, SharedRateLimiter) and d is not a  # default group: the API host
    assert isinstance(m, SlidingWindowLimiter)
    monkeypatch.setenv(BACKEND_ENV, "memory://")
    assert isinstance(
        get_limiter("calltouch", "https://api.calltouch.ru", 5.0, group="office-nat"), SlidingWindowLimiter
    )
