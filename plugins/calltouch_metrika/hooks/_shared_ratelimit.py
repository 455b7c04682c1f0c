"""One Calltouch rate limit shared by every process and worker that leaves through the same IP.

Calltouch allows 5 requests/s **per IP** (api-notes §Calltouch limits). The in-process limiter
(:class:`~calltouch_metrika.hooks._ratelimit.SlidingWindowLimiter`) only sees its own process, so until
now every Calltouch task ran in a pool of one slot. This module lets all processes share one limit
through a backend chosen by configuration:

=================================  ==============================================================
``CALLTOUCH_METRIKA_RATE_LIMIT_BACKEND`` (or Airflow config ``[calltouch_metrika] rate_limit_backend``)
---------------------------------------------------------------------------------------------------
unset, ``""`` or ``memory://``     in-process (today's limiter; ``airflow dags test``, one task at a time)
``sqlite:////abs/path/limits.db``  a file shared by every process of one machine (LocalExecutor)
``redis://host:6379/0``            a Redis shared by every machine (CeleryExecutor; also ``rediss://``)
=================================  ==============================================================

The algorithm is pyrate-limiter's GCRA (a leaky bucket kept as one "theoretical arrival time") with a
burst of one: starts are spaced at least ``window / max_requests`` apart (210 ms for 5 per 1.05 s),
evenly, so no rolling second can hold more than 5 starts, whichever process sends them. The state lives
in the backend and is updated atomically: a Lua script in Redis (the library's ``RedisStateStore``), an
``BEGIN IMMEDIATE`` transaction in the SQLite file (:class:`SQLiteStateStore`; the library ships GCRA
stores for memory and Redis only). Timestamps are wall-clock milliseconds: processes on one machine share
the clock; a Redis shared by several machines needs their clocks in sync (NTP), as any shared limiter.

Fairness: inside a process, threads are served first come, first served (tickets; only the head of the
line polls the backend). Between processes, every head of line waits exactly until the shared arrival
time and then tries once, so each waiting process (in Airflow: each waiting task) has the same chance at
every slot: fair in expectation, never starved for long (tested).

A 429 still widens this process's spacing a little (:meth:`SharedRateLimiter.penalize`), and the hooks'
retry policy still backs off (honouring ``Retry-After``).

A limiter *group* names the egress IP: connections that leave through the same IP share a group
(connection extra ``rate_limit_group``; default: the API host), and each group has its own state key.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pyrate_limiter import GCRA, Rate, RedisStateStore
from pyrate_limiter.abstracts.algorithm import Decision, StateAlgorithm
from pyrate_limiter.abstracts.store import StateStore
from pyrate_limiter.clocks import WallClock

#: Environment variable that selects the backend (wins over the Airflow config option).
BACKEND_ENV = "CALLTOUCH_METRIKA_RATE_LIMIT_BACKEND"
#: Airflow config section/option that selects the backend (``AIRFLOW__CALLTOUCH_METRIKA__RATE_LIMIT_BACKEND``).
BACKEND_SECTION, BACKEND_OPTION = "calltouch_metrika", "rate_limit_backend"
#: Prefix of every state key (Redis key / SQLite row).
KEY_PREFIX = "calltouch_metrika:ratelimit"


class RateLimitBackendError(ValueError):
    """The configured backend URL is not one we can use; the message names the setting and the value."""


def configured_backend() -> str | None:
    """The backend URL from ``$CALLTOUCH_METRIKA_RATE_LIMIT_BACKEND``, else Airflow's config, else ``None``.

    ``None`` (also for ``""`` and ``memory://``) means the in-process limiter.
    """
    value = os.environ.get(BACKEND_ENV)
    if value is None:
        try:
            from airflow.configuration import conf

            value = conf.get(BACKEND_SECTION, BACKEND_OPTION, fallback=None)
        except Exception:  # Airflow not importable or not configured: in-process
            value = None
    value = (value or "").strip()
    if not value or value.lower() in ("memory", "memory://"):
        return None
    return value


def describe_backend(url: str | None) -> str:
    """The backend without credentials, for logs (``redis://host:6379/0``, ``sqlite:///path``, ``memory``)."""
    if not url:
        return "memory (in-process)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --------------------------------------------------------------------------------------------------
# The algorithm: GCRA with reservations
# --------------------------------------------------------------------------------------------------


class ReservingGCRA(GCRA):
    """pyrate-limiter's GCRA (burst 1), but a request *reserves* the next free slot instead of polling.

    The state is one theoretical arrival time (TAT, integer microseconds, as in the library). A request
    at ``now`` gets the slot ``max(TAT, now)`` and pushes TAT one emission interval further; the decision
    is always "admitted", with ``retry_after_ms`` = how long to wait for that slot. So the shared state is
    a queue: slots are handed out in the order requests reach the backend (first come, first served
    across every process and machine, one round trip per request, no thundering herd of pollers), and
    two starts are never closer than one interval (``window / max_requests``) in the store's time.
    """

    def step(self, rates: list[Rate], state: tuple[Any, ...], now: int, weight: int) -> tuple[Any, Decision]:
        (rate,) = rates
        now_us = now * 1000
        slot = max(int(state[0]), now_us)
        new_tat = slot + weight * self._emission_us(rate)
        return (new_tat,), Decision(failing_rate=None, retry_after_ms=math.ceil((slot - now_us) / 1000))

    def redis_script(self) -> str:
        return _RESERVE_LUA


# Same header as the library's GCRA script (now ms, weight, ttl ms, rate count, then emission us, burst).
_RESERVE_LUA = """
local key = KEYS[1]
local now_us = tonumber(ARGV[1]) * 1000
local weight = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local emission = tonumber(ARGV[5])
local slot = now_us
local stored = redis.call('HGET', key, 'tat1')
if stored then
    local parsed = tonumber(stored)
    if parsed and parsed > now_us then
        slot = parsed
    end
end
local new_tat = slot + weight * emission
redis.call('HSET', key, 'tat1', string.format('%.0f', new_tat))
redis.call('PEXPIRE', key, ttl + math.ceil((new_tat - now_us) / 1000))
return {-1, math.ceil((slot - now_us) / 1000)}
"""


# --------------------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------------------


class SQLiteStateStore(StateStore):
    """GCRA state of one key in a SQLite file, updated in a ``BEGIN IMMEDIATE`` transaction.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock before reading, so read-step-write is atomic across
    processes (and threads: one connection per store, behind a lock). WAL journal, ``busy_timeout`` 30 s.
    Rows: ``key`` -> comma-joined state numbers.

    :param path: the database file (created with its table if missing).
    :param key: the state key (one per limiter group).
    """

    is_async = False
    default_clock = WallClock()

    def __init__(self, path: str | Path, key: str) -> None:
        self.path = str(path)
        self.key = key
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        with contextlib.suppress(sqlite3.OperationalError):  # another process is switching it to WAL now
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS gcra_state (key TEXT PRIMARY KEY, state TEXT NOT NULL)"
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"rate-limit store {self.path} is closed")
        return self._conn

    def _load(
        self, conn: sqlite3.Connection, algorithm: StateAlgorithm, rates: list[Rate]
    ) -> tuple[Any, ...]:
        row = conn.execute("SELECT state FROM gcra_state WHERE key = ?", (self.key,)).fetchone()
        if row is None:
            return algorithm.initial(rates)
        values = row[0].split(",")
        return algorithm.decode(values) if len(values) == len(rates) else algorithm.initial(rates)

    def check(self, algorithm: StateAlgorithm, rates: list[Rate], now: int, weight: int) -> Decision:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                state = self._load(conn, algorithm, rates)
                new_state, decision = algorithm.step(rates, state, now, weight)
                if decision.allowed:
                    conn.execute(
                        "INSERT INTO gcra_state (key, state) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET state = excluded.state",
                        (self.key, ",".join(str(int(v)) for v in new_state)),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return decision

    def read(self, algorithm: StateAlgorithm, rates: list[Rate]) -> tuple[Any, ...]:
        with self._lock:
            return self._load(self._connection(), algorithm, rates)

    def reset(self) -> None:
        with self._lock:
            self._connection().execute("DELETE FROM gcra_state WHERE key = ?", (self.key,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class ReservingRedisStateStore(RedisStateStore):
    """The library's Redis store (Lua script, registered once, reloaded on NOSCRIPT); keeps the slot's wait.

    The library's reply parser drops the wait of an admitted request; a reservation needs it.
    """

    @staticmethod
    def _decision(rates: list[Rate], reply: Any) -> Decision:
        index, retry_after = int(reply[0]), int(reply[1])
        if index < 0:
            return Decision(failing_rate=None, retry_after_ms=max(0, retry_after))
        return Decision(failing_rate=rates[index])


def make_store(url: str, key: str) -> StateStore:
    """The pyrate-limiter state store for a backend URL (see the module doc for the forms).

    :raises RateLimitBackendError: an unknown scheme, a relative SQLite path, or the ``redis`` package
        missing; the message names the setting.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    where = f"{BACKEND_ENV} / [{BACKEND_SECTION}] {BACKEND_OPTION} = {describe_backend(url)!r}"
    if scheme == "sqlite":
        # SQLAlchemy's form: sqlite:////abs/path.db -> /abs/path.db (sqlite:///rel.db would be relative)
        path = unquote(parts.path)[1:]
        if not path or not os.path.isabs(path):
            raise RateLimitBackendError(
                f"{where}: the SQLite file must be an absolute path (sqlite:////path)"
            )
        return SQLiteStateStore(path, key)
    if scheme in ("redis", "rediss", "unix"):
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a pinned dependency
            raise RateLimitBackendError(f"{where}: the `redis` package is not installed") from exc
        client = redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=10, health_check_interval=30
        )
        return ReservingRedisStateStore(client, key)
    raise RateLimitBackendError(
        f"{where}: unknown scheme {scheme!r}; use memory://, sqlite:////absolute/path.db or redis://host:port/db"
    )


# --------------------------------------------------------------------------------------------------
# The limiter
# --------------------------------------------------------------------------------------------------


class SharedRateLimiter:
    """At most ``max_requests`` request starts per ``window`` seconds, evenly spaced, across processes.

    The same surface as the in-process ``SlidingWindowLimiter`` (``acquire`` / ``aacquire`` /
    ``release`` / ``penalize`` / ``reward`` / ``update``, ``history``), so the transports use either.
    Each start reserves the next free slot in the shared store (:class:`ReservingGCRA`) and sleeps until
    it: first come, first served across all processes.

    :param store: where the state lives (:func:`make_store`).
    :param max_requests: starts allowed per ``window``.
    :param window: seconds (e.g. 1.05: 5 per 1.05 s keeps a margin under Calltouch's 5 per second).
    :param max_in_flight: optional cap on this process's requests in flight (released by :meth:`release`);
        it also bounds how many slots one process holds reserved at once.
    :param backend: a description for logs and errors (no credentials).
    :param sleep: injectable for tests (default :func:`time.sleep`).
    """

    shared = True

    def __init__(
        self,
        store: StateStore,
        max_requests: int,
        window: float = 1.05,
        max_in_flight: int | None = None,
        *,
        backend: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests < 1 or window <= 0:
            raise ValueError("a rate limit needs max_requests >= 1 and window > 0")
        self.max_requests = max_requests
        self.base_window = window
        self.window = window
        self.max_window = window * 1.3
        self.max_in_flight = max_in_flight
        self.backend = backend
        self.store = store
        self._sleep = sleep
        self._algorithm = ReservingGCRA()
        self._clock = WallClock()
        self._lock = threading.Lock()
        self._rates = [self._rate()]
        self._in_flight = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        #: recent start times (:func:`time.monotonic`) of this process, for tests and benchmarks
        self.history: collections.deque[float] = collections.deque(maxlen=100_000)
        #: wall-clock times (s) of the slots this process reserved: what the store guarantees
        self.slots: collections.deque[float] = collections.deque(maxlen=100_000)
        #: seconds this process spent waiting for its slots (the limiter's share of a task's time)
        self.waited = 0.0

    def _rate(self) -> Rate:
        # burst=1: one start per interval (window / max_requests), never two together
        return Rate(self.max_requests, max(1, round(self.window * 1000)), burst=1)

    @property
    def interval(self) -> float:
        """Seconds between two starts (``window / max_requests``)."""
        return self.window / self.max_requests

    def reserve(self) -> float:
        """Reserve the next free slot in the shared store; seconds from now until it (0: go now)."""
        now_ms = self._clock.now()
        decision = self.store.check(self._algorithm, self._rates, now_ms, 1)
        if not decision.allowed:  # pragma: no cover - a reservation is always admitted
            raise RuntimeError(f"rate-limit store refused a reservation ({decision.failing_rate})")
        wait_ms = decision.retry_after_ms or 0
        self.slots.append((now_ms + wait_ms) / 1000.0)
        return wait_ms / 1000.0

    def _started(self, waited: float) -> None:
        self.history.append(time.monotonic())
        with self._lock:
            self.waited += waited

    def acquire(self) -> None:
        """Block until this request's slot (and, if capped, a parallel slot) has come."""
        if self._in_flight is not None:
            self._in_flight.acquire()
        try:
            delay = self.reserve()
            if delay > 0:
                self._sleep(delay)
        except BaseException:
            if self._in_flight is not None:
                self._in_flight.release()
            raise
        self._started(delay)

    async def aacquire(self) -> None:
        """:meth:`acquire` for asyncio code: the backend round trip runs in a thread, the wait is async."""
        if self._in_flight is not None:
            while not self._in_flight.acquire(blocking=False):
                await asyncio.sleep(0.02)
        try:
            delay = await asyncio.to_thread(self.reserve)
            if delay > 0:
                await asyncio.sleep(delay)
        except BaseException:
            if self._in_flight is not None:
                self._in_flight.release()
            raise
        self._started(delay)

    def release(self) -> None:
        """End of a request started with :meth:`acquire` (frees the parallel slot, if capped)."""
        if self._in_flight is not None:
            self._in_flight.release()

    def penalize(self) -> None:
        """A 429 (rate): widen this process's spacing by 3 % of the base window (up to +30 %)."""
        with self._lock:
            self.window = min(self.max_window, self.window + 0.03 * self.base_window)
            self._rates = [self._rate()]

    def reward(self) -> None:
        """A request went through: drift the spacing back towards its base, slowly."""
        if self.window > self.base_window:
            with self._lock:
                self.window = max(self.base_window, self.window - 0.0005 * self.base_window)
                self._rates = [self._rate()]

    def update(self, max_requests: int, window: float) -> None:
        """Tighten the rate in place (a hook asking for a stricter rate wins for the whole process)."""
        with self._lock:
            if max_requests / window < self.max_requests / self.base_window:
                self.max_requests, self.window, self.base_window = max_requests, window, window
                self.max_window = window * 1.3
                self._rates = [self._rate()]

    def reset(self) -> None:
        """Forget the shared state of this group (tests)."""
        self.store.reset()

    def close(self) -> None:
        self.store.close()


def state_key(api: str, group: str) -> str:
    """The backend key of one limiter group: ``calltouch_metrika:ratelimit:<api>:<group>``."""
    return f"{KEY_PREFIX}:{api}:{group.strip().lower()}"


def make_shared_limiter(
    url: str,
    api: str,
    group: str,
    max_requests: int,
    window: float = 1.05,
    max_in_flight: int | None = None,
) -> SharedRateLimiter:
    """A :class:`SharedRateLimiter` of one group on the backend ``url`` (see the module doc)."""
    return SharedRateLimiter(
        make_store(url, state_key(api, group)),
        max_requests,
        window,
        max_in_flight,
        backend=describe_backend(url),
    )
