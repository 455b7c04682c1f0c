"""Rate limiting shared by every hook: a process-wide sliding-window limiter per API host, and GC tuning.

* :class:`SlidingWindowLimiter` and :func:`get_limiter`: at most N request *starts* in any rolling window,
  per process and per API host (or, for Calltouch with a shared backend configured, per limiter group
  across every process: :mod:`calltouch_metrika.hooks._shared_ratelimit`), shared by every hook
  instance (the APIs count per IP, not per hook); evenly paced and first come first served among threads; optionally also a cap on requests in flight
  (some APIs also cap parallel requests).
* :func:`young_gc_only` keeps full GC pauses out of paced extraction.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class SlidingWindowLimiter:
    """At most ``max_requests`` request starts in any rolling ``window`` seconds; thread-safe.

    A sliding-window log: a start is recorded (under the lock, with the real clock) only when fewer than
    ``max_requests`` starts lie in the last ``window`` seconds; otherwise the caller sleeps until the
    oldest one leaves the window and tries again. The send follows the record immediately, so the API
    sees the same spacing. Works for threads (:meth:`acquire`) and asyncio (:meth:`aacquire`).
    An optional ``max_in_flight`` caps concurrent requests (released by :meth:`release`).
    ``history`` keeps the recent start times (``clock``) for tests and benchmarks; the keyword-only
    ``clock`` and ``sleep`` (default :func:`time.monotonic` / :func:`time.sleep`) let tests drive the
    thread path on a fake clock.

    With ``spread`` (the default) starts are also paced on an even grid of one per ``window / max_requests``
    (a start may come a quarter interval early, so late wake-ups do not accumulate): the same rate,
    but evenly instead of in bursts of ``max_requests``. Bursts come back as bursts
    of answers whose JSON parsing (which holds the GIL) delays the sends of the next burst by tens of
    milliseconds, unevenly, and the server then clocks some of them closer together than the window
    (429); evenly paced requests keep the whole margin of the window.
    """

    def __init__(
        self,
        max_requests: int,
        window: float = 1.05,
        max_in_flight: int | None = None,
        *,
        spread: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests < 1 or window <= 0:
            raise ValueError("a rate limit needs max_requests >= 1 and window > 0")
        self.max_requests = max_requests
        self.window = window
        self.max_in_flight = max_in_flight
        self.spread = spread
        self._clock = clock  # injectable (with ``sleep``) so tests can drive the limiter on a fake clock
        self._sleep = sleep
        self._next_slot = 0.0  # monotonic time of the next start on the even grid (spread only)
        # first come, first served among threads (tickets): without it, the threads waiting for a slot
        # race for it, and a page can lose many times in a row, holding its whole day back
        self._turn = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()
        self._lock = threading.Lock()
        self._starts: collections.deque[float] = collections.deque()
        self._in_flight = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self.history: collections.deque[float] = collections.deque(maxlen=100_000)
        self.base_window = window
        self.max_window = window * 1.3

    def penalize(self) -> None:
        """The server said 429 (rate): it clocks our requests closer together than we sent them.

        Widen the window a little (up to +30 %), so pacing adapts to the server's jitter.
        """
        with self._lock:
            self.window = min(self.max_window, self.window + 0.03 * self.base_window)

    def reward(self) -> None:
        """A request went through: drift the window back towards its base, slowly."""
        if self.window > self.base_window:
            with self._lock:
                self.window = max(self.base_window, self.window - 0.0005 * self.base_window)

    def _try_start(self) -> float:
        """Record a start and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self._clock()
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            interval = self.window / self.max_requests
            if self.spread:
                # GCRA-style pacing on an ideal grid (one slot per interval), a quarter interval of
                # tolerance: a thread that wakes a few ms late does not push every later start back.
                gap = self._next_slot - 0.25 * interval - now
                if gap > 0:
                    return gap
            if len(self._starts) < self.max_requests:
                self._starts.append(now)
                self.history.append(now)
                self._next_slot = max(self._next_slot, now) + interval
                return 0.0
            return max(self._starts[0] + self.window - now, 0.001)

    def acquire(self) -> None:
        """Block until a request may start (and, if capped, until a parallel slot is free).

        Threads are served in arrival order: only the first in line polls the window.
        """
        if self._in_flight is not None:
            self._in_flight.acquire()
        with self._turn:
            ticket = self._next_ticket
            self._next_ticket += 1
        try:
            with self._turn:
                while self._serving != ticket:
                    self._turn.wait()
            while (delay := self._try_start()) > 0:
                self._sleep(delay)
        except BaseException:
            if self._in_flight is not None:
                self._in_flight.release()
            with self._turn:
                self._done_with(ticket)
            raise
        with self._turn:
            self._done_with(ticket)

    def _done_with(self, ticket: int) -> None:
        """Pass the turn on (called with ``_turn`` held); a ticket given up early is skipped when reached."""
        if ticket != self._serving:
            self._abandoned.add(ticket)
            return
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.remove(self._serving)
            self._serving += 1
        self._turn.notify_all()

    async def aacquire(self) -> None:
        """:meth:`acquire` for asyncio code (never blocks the event loop)."""
        if self._in_flight is not None:
            while not self._in_flight.acquire(blocking=False):
                await asyncio.sleep(0.02)
        while (delay := self._try_start()) > 0:
            await asyncio.sleep(delay)

    def release(self) -> None:
        """End of a request started with :meth:`acquire` (frees the parallel slot, if capped)."""
        if self._in_flight is not None:
            self._in_flight.release()

    def update(self, max_requests: int, window: float) -> None:
        """Tighten the rate in place (a hook asking for a stricter rate wins for the whole process).

        The in-flight cap is fixed when the limiter is created (swapping a semaphore that threads hold
        would break its accounting).
        """
        with self._lock:
            if max_requests / window < self.max_requests / self.base_window:
                self.max_requests, self.window, self.base_window = max_requests, window, window
                self.max_window = window * 1.3


_GC_LOCK = threading.Lock()
_GC_DEPTH = 0
_GC_SAVED: list[tuple[int, ...]] = []


@contextlib.contextmanager
def young_gc_only() -> Iterator[None]:
    """While the block runs, the cyclic garbage collector only collects its youngest generation.

    Why: a paced extraction parses ~1.4 MB of JSON per page (tens of thousands of containers) in
    several threads. Records that live until their day is complete get promoted to the older
    generations and keep triggering full collections, each scanning everything held while every thread
    waits on the GIL: pauses of 0.3-0.6 s in which the limiter's slots go unused, and a request the
    limiter recorded just before a pause reaches the API late, clocked closer to the next ones than
    sent (a 429). Inside the block generation 0 is still collected automatically (small, frequent,
    sub-millisecond passes, so short-lived cycles are freed); generations 1 and 2 wait until the block
    ends. Records are acyclic JSON and are freed by reference counting as always. On exit the previous
    thresholds come back (nested and thread-safe: the outermost block restores them).
    """
    global _GC_DEPTH
    with _GC_LOCK:
        if _GC_DEPTH == 0:
            saved = gc.get_threshold()
            _GC_SAVED[:] = [saved]
            gc.set_threshold(saved[0], 2**31 - 1, 2**31 - 1)
        _GC_DEPTH += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_DEPTH -= 1
            if _GC_DEPTH == 0 and _GC_SAVED:
                gc.set_threshold(*_GC_SAVED.pop())


_LIMITERS: dict[tuple[str, str, str], Any] = {}
_LIMITERS_LOCK = threading.Lock()


#: The shortest window of a limit shared through a backend (seconds per ``requests_per_second`` starts):
#: 5 per 1.15 s = one start per 230 ms, 87 % of Calltouch's 5/s, against 95 % in one process.
SHARED_MIN_WINDOW = 1.15


def get_limiter(
    api: str,
    base_url: str,
    requests_per_second: float,
    *,
    window: float = 1.05,
    max_in_flight: int | None = None,
    group: str | None = None,
) -> Any:
    """The limiter of one API host or limiter group (``api`` is ``"calltouch"`` or ``"metrika"``).

    ``requests_per_second`` (e.g. 5.0) becomes "at most ceil(rps) starts per ``window`` scaled to rps".
    ``group`` (the connection extra ``rate_limit_group``; default: the API host) names the egress IP:
    every connection of one group shares one limit. For Calltouch, when a shared backend is configured
    (``CALLTOUCH_METRIKA_RATE_LIMIT_BACKEND`` / ``[calltouch_metrika] rate_limit_backend``), the limit is
    shared by every process through it (:class:`~calltouch_metrika.hooks._shared_ratelimit.SharedRateLimiter`,
    same surface); otherwise, and always for Metrika (its limits are per user and generous), it is
    process-wide (:class:`SlidingWindowLimiter`).

    :raises ~calltouch_metrika.hooks._shared_ratelimit.RateLimitBackendError: a backend URL we cannot use.
    """
    from calltouch_metrika.hooks._shared_ratelimit import configured_backend, make_shared_limiter

    if requests_per_second <= 0:
        raise ValueError("requests_per_second must be > 0")
    max_requests = max(1, round(requests_per_second))
    window = window * max_requests / requests_per_second
    group = (group or urlsplit(base_url).netloc).strip().lower()
    backend = configured_backend() if api == "calltouch" else None
    key = (api, group, backend or "")
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            if backend:
                # Slots reserved in a shared store are sent by processes that a busy CPU can wake late,
                # bunching arrivals at the API (seen: 140 ms apart for 210 ms slots under load, 6 in
                # one second): the shared limit keeps a wider margin than one process needs.
                window = max(window, SHARED_MIN_WINDOW * max_requests / requests_per_second)
                limiter = make_shared_limiter(backend, api, group, max_requests, window, max_in_flight)
            else:
                limiter = SlidingWindowLimiter(max_requests, window, max_in_flight)
            _LIMITERS[key] = limiter
            log.info(
                "%s rate limit: %d request(s) per %.2f s, group %r, %s",
                api,
                max_requests,
                window,
                group,
                f"shared through {limiter.backend}" if backend else "in this process",
            )
        else:
            limiter.update(max_requests, window)
        return limiter
