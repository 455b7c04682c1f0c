"""The shared limiter's guarantees and the GC guard of paced extraction, proven deterministically.

The thread path of :class:`SlidingWindowLimiter` runs on a fake clock (injected ``clock``/``sleep``):
``sleep`` advances the fake time instead of waiting, so every recorded start time is exact and the
assertions are about the limiter's arithmetic, never about how fast this machine is. Only one thread
ever sleeps at a time (first come, first served: only the head of the line polls the window), which
is what makes a shared fake clock deterministic with many threads.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from calltouch_metrika.hooks._ratelimit import SlidingWindowLimiter, young_gc_only
from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.hooks.metrika import MetrikaHook
from tests.hooks.conftest import DAY, status_count

EPS = 1e-9
YOUNG_ONLY_OLDER = 2**31 - 1


class FakeClock:
    """A monotonic clock that only moves when someone sleeps; ``gate`` can hold sleepers back."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        self.gate.wait(timeout=30)
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


def _limiter(clock: FakeClock, max_requests: int, window: float, **kw: Any) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(max_requests, window, clock=clock, sleep=clock.sleep, **kw)


def _max_in_any_window(starts: list[float], window: float) -> int:
    """Most starts in any half-open window ``(t - window, t]`` (the limiter's own definition)."""
    ordered = sorted(starts)
    best = 0
    lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window + EPS:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _hammer(limiter: SlidingWindowLimiter, threads: int, per_thread: int) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                limiter.acquire()
                limiter.release()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in pool), "a thread is stuck in acquire()"
    assert not errors


@pytest.mark.parametrize("spread", [False, True])
def test_never_more_than_n_starts_in_any_rolling_window_under_many_threads(spread: bool) -> None:
    clock = FakeClock()
    limiter = _limiter(clock, 5, 1.0, max_in_flight=4, spread=spread)
    _hammer(limiter, threads=16, per_thread=25)
    starts = list(limiter.history)
    assert len(starts) == 400
    assert _max_in_any_window(starts, 1.0) == 5  # full use of the window, never more
    # 400 starts at 5 per second need at least 79 windows of fake time (the first 5 start at once)
    assert clock.now >= 79.0 - EPS
    if not spread:
        # bursts: the first five starts share t=0, then each next one waits for the oldest to leave
        assert starts[:5] == [0.0] * 5 and starts[5] >= 1.0 - EPS


def test_window_holds_on_the_real_clock_too() -> None:
    """Recorded (real) start times obey the window whatever the scheduling; no duration is asserted."""
    limiter = SlidingWindowLimiter(4, 0.1, max_in_flight=3)
    _hammer(limiter, threads=8, per_thread=4)
    assert len(limiter.history) == 32
    assert _max_in_any_window(list(limiter.history), 0.1) <= 4


def test_waiting_threads_are_served_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, 1, 1.0, spread=False)
    limiter.acquire()  # t=0: the window is now full, every next thread must wait
    clock.gate.clear()  # the head of the line blocks in sleep() until every thread has queued
    served: list[tuple[int, float]] = []
    served_lock = threading.Lock()

    def wait_turn(n: int) -> None:
        limiter.acquire()
        with served_lock:
            served.append((n, clock()))

    threads = []
    for n in range(12):
        t = threading.Thread(target=wait_turn, args=(n,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 10
        while limiter._next_ticket < n + 2:  # this thread holds its ticket before the next one starts
            assert time.monotonic() < deadline, f"thread {n} never queued"
            time.sleep(0.001)
    clock.gate.set()
    for t in threads:
        t.join(timeout=30)
    assert [n for n, _ in served] == list(range(12))
    assert [round(at, 6) for _, at in served] == [float(n) for n in range(1, 13)]


def test_a_thread_that_gives_up_does_not_block_the_line() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def sleep(seconds: float) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the head of the line is interrupted while waiting
        clock.sleep(seconds)

    limiter = SlidingWindowLimiter(1, 1.0, max_in_flight=1, clock=clock, sleep=sleep, spread=False)
    limiter.acquire()
    limiter.release()
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire()
    # its ticket and its parallel slot were given back: the next caller is served
    done = threading.Event()
    t = threading.Thread(target=lambda: (limiter.acquire(), done.set()))
    t.start()
    t.join(timeout=10)
    assert done.is_set()
    assert list(limiter.history) == [0.0, 1.0]


def test_spread_paces_starts_evenly_instead_of_in_bursts() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, 5, 1.0, spread=True)
    _hammer(limiter, threads=6, per_thread=5)
    starts = list(limiter.history)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    interval = 1.0 / 5
    # Never closer than the grid's quarter-interval tolerance allows and never a burst; at most a
    # quarter interval (+ the 1 ms re-poll at a window edge) late, where the rolling window holds the
    # start that the early grid would allow: the rate stays exactly max_requests per window.
    assert all(0.75 * interval - EPS <= g <= 1.25 * interval + 0.001 + EPS for g in gaps), gaps
    assert all(abs(starts[5 * k] - k * 1.0) < 0.002 for k in range(len(starts) // 5)), starts
    assert _max_in_any_window(starts, 1.0) <= 5

    bursty = _limiter(FakeClock(), 5, 1.0, spread=False)
    _hammer(bursty, threads=6, per_thread=5)
    assert list(bursty.history)[:5] == [0.0] * 5  # the contrast: without spread, five at once


# -- young_gc_only ---------------------------------------------------------------------------------


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """Distinctive GC thresholds for the test, the interpreter's own put back afterwards."""
    original = gc.get_threshold()
    gc.set_threshold(613, 17, 19)
    yield (613, 17, 19)
    gc.set_threshold(*original)


def test_young_gc_only_nested_restores_on_the_outermost_exit(thresholds: tuple[int, int, int]) -> None:
    young = (thresholds[0], YOUNG_ONLY_OLDER, YOUNG_ONLY_OLDER)
    with young_gc_only():
        assert gc.get_threshold() == young
        with young_gc_only():
            assert gc.get_threshold() == young
        assert gc.get_threshold() == young  # the inner exit must not restore early
    assert gc.get_threshold() == thresholds


def test_young_gc_only_restores_after_an_exception(thresholds: tuple[int, int, int]) -> None:
    with pytest.raises(ZeroDivisionError), young_gc_only(), young_gc_only():
        _ = 1 / 0
    assert gc.get_threshold() == thresholds


def test_young_gc_only_from_overlapping_threads(thresholds: tuple[int, int, int]) -> None:
    inside = threading.Barrier(6)
    leave: list[threading.Event] = [threading.Event() for _ in range(6)]
    seen: list[tuple[int, ...]] = []

    def worker(n: int) -> None:
        with young_gc_only():
            inside.wait(timeout=10)
            leave[n].wait(timeout=10)
            seen.append(gc.get_threshold())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    # leave one by one: until the last one leaves, the older generations stay off
    for n in range(6):
        leave[n].set()
        threads[n].join(timeout=10)
        if n < 5:
            assert gc.get_threshold()[1:] == (YOUNG_ONLY_OLDER, YOUNG_ONLY_OLDER)
    assert all(s[1:] == (YOUNG_ONLY_OLDER, YOUNG_ONLY_OLDER) for s in seen)
    assert gc.get_threshold() == thresholds


@pytest.mark.integration
def test_extraction_restores_gc_when_the_consumer_stops_early(
    sandbox: Any, calltouch: Any, thresholds: tuple[int, int, int]
) -> None:
    hook = calltouch(max_in_flight=2)
    days = hook.iter_calls_by_day("2026-11-14", "2026-11-20")
    first_day, calls = next(days)
    assert first_day.isoformat() == "2026-11-14" and len(calls) == 150
    assert gc.get_threshold()[1:] == (YOUNG_ONLY_OLDER, YOUNG_ONLY_OLDER)  # guarded while paused
    days.close()  # the consumer stops after one day of seven
    assert gc.get_threshold() == thresholds


@pytest.mark.integration
def test_extraction_restores_gc_when_a_request_fails(
    sandbox: Any, calltouch: Any, thresholds: tuple[int, int, int]
) -> None:
    from calltouch_metrika.exceptions import ServerError

    sandbox.faults(fail_5xx=10, scope="calltouch")
    with pytest.raises(ServerError):
        calltouch(max_attempts=2).get_calls("2026-11-20", "2026-11-20")
    assert gc.get_threshold() == thresholds


# -- limiter on real threads, asyncio and hooks against the sandbox ------------------------------------


def test_limiter_never_admits_more_than_n_in_any_window() -> None:
    limiter = SlidingWindowLimiter(3, window=0.1)

    def worker() -> None:
        for _ in range(4):
            limiter.acquire()
            limiter.release()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts = sorted(limiter.history)
    assert len(starts) == 20
    assert all(starts[i + 3] - starts[i] >= 0.1 for i in range(len(starts) - 3))


async def test_limiter_async_respects_window_and_parallel_cap() -> None:
    import asyncio

    limiter = SlidingWindowLimiter(4, window=0.1, max_in_flight=2)
    in_flight = 0
    peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        await limiter.aacquire()
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        limiter.release()

    await asyncio.gather(*(one() for _ in range(12)))
    starts = sorted(limiter.history)
    assert len(starts) == 12 and peak <= 2
    assert all(starts[i + 4] - starts[i] >= 0.1 for i in range(len(starts) - 4))


def test_limiter_is_shared_by_hooks_of_one_host(sandbox: Any) -> None:
    a, b = CalltouchHook(), CalltouchHook(site_id=10002)
    assert a.transport.limiter is b.transport.limiter
    assert a.transport.limiter is not MetrikaHook().transport.limiter
    a.get_calls(DAY, DAY)
    b.get_calls(DAY, DAY)
    starts = sorted(a.transport.limiter.history)
    assert all(starts[i + 5] - starts[i] >= 1.0 for i in range(len(starts) - 5))


def test_parallel_extraction_stays_within_the_window(sandbox: Any, calltouch: Any) -> None:
    """3 days x 2001 calls: 9 pages fetched concurrently, never more than 5 starts per window."""
    sandbox.reset(volume_overrides={f"10001:2026-11-{d}": 2001 for d in (18, 19, 20)})
    hook = calltouch()
    before = len(hook.transport.limiter.history)
    assert len(hook.get_calls("2026-11-18", "2026-11-20")) == 3 * 2001
    starts = sorted(list(hook.transport.limiter.history)[before:])
    # 9 pages; a 429 is possible when the sandbox stamps queued requests late, and is retried
    assert len(starts) >= 9
    assert status_count(sandbox.state(), "200") == 9
    window = hook.transport.limiter.window
    assert all(starts[i + 5] - starts[i] >= window for i in range(len(starts) - 5))
