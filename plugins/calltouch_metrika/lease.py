"""One writer per Metrika counter: a lease on the storage root, with expiry, renewal and takeover.

Why a lease on storage: the step "compute which calls are new -> upload them -> record them in the
counter's ledger" must run for one counter in one place at a time, across processes, DAG runs,
pipelines that share a counter and Celery workers on several hosts. The one thing all of them share
is the storage root (a local folder or an fsspec URL such as ``s3://bucket/prefix``), so the lock
lives there, next to the ledger it protects.

Alternatives considered:

* An Airflow pool with one slot per counter: pools are static (created by hand, by name), a task's
  pool is fixed at parse time, and a pool bounds running *task instances*, not a critical section,
  so a retried or deferred task could still interleave; not dynamic enough.
* Airflow 3 gives tasks no metadata-database access (Task SDK) and Variables have no
  compare-and-set, so no Airflow-native mutex exists for tasks.
* ``filelock``/``fasteners`` hold on one host's filesystem only (``flock``/``fcntl``); they are not
  valid on object storage and unreliable on network filesystems.

The mechanism: lease *generations*. Holding generation ``N`` of counter ``C`` means having created
``{root}/metrika/locks/counter={C}/lease-{N:012d}.json`` with an **exclusive create** (the file must
not exist), and the lease being neither released (``released-{N:012d}.json`` exists) nor expired
(its ``expires_at`` is in the past). To acquire: list the generations, take the highest ``N``; if
there is none, or ``N`` is released or expired, exclusively create ``N + 1``; exactly one contender
succeeds, the others see :class:`FileExistsError` and look again. A holder renews its lease from a
background thread (rewriting its own generation's file, every ``ttl / 3``); a crashed holder stops
renewing and its lease expires after at most ``ttl`` seconds, so a counter is never blocked forever.
Superseded generations are deleted by the next holder.

Exclusive create:

* local paths (``file://``): the lease is written to a temporary sibling and hard-linked into place
  (``os.link`` fails if the name exists), so the file appears exclusively *and* complete;
* other fsspec filesystems: ``fs.open(path, "xb")``. It is a real conditional write on ``memory://``,
  ``s3://`` (s3fs >= 2025.7 sends ``If-None-Match: *``; older s3fs silently overwrote small files,
  fsspec/s3fs#973), ``gs://`` (gcsfs, ``ifGenerationMatch=0``) and ``az://``/``abfs://`` (adlfs).
  Other protocols are refused with :class:`LeaseUnsupportedError` rather than locking unsafely;
  ``unsafe_protocols_ok=True`` accepts them (last-writer-wins: two runs starting within the same
  instant may both proceed) and says so in the log.

Limits (documented, not hidden): expiry compares the holder's and the waiter's wall clocks, so hosts
must keep their clocks in sync (NTP) to well within ``ttl``; a holder paused longer than ``ttl`` (a
frozen VM) can lose its lease while it still runs: the holder calls :meth:`CounterLease.check` right
before each irreversible step (the upload) and stops with :class:`LeaseLostError` if its generation
was superseded; the ledger, written after the upload, makes the next holder see what was sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from calltouch_metrika import storage

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: Protocols whose ``open(mode="xb")`` is a real conditional create (see the module docstring).
EXCLUSIVE_CREATE_PROTOCOLS = frozenset({"memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})
_LEASE_RE = re.compile(r"^lease-(\d{12})\.json$")
_RELEASED_RE = re.compile(r"^released-(\d{12})\.json$")


class LeaseError(AirflowException):
    """Base class of the lease errors."""


class CounterBusyError(LeaseError):
    """Another run holds the counter's lease and did not release it within the wait timeout.

    Retrying the task later is safe: the holder's work is recorded in the ledger, so a later run
    uploads only what is still missing.
    """


class LeaseLostError(LeaseError):
    """This run's lease was superseded (it expired and another run took the counter over)."""


class LeaseUnsupportedError(LeaseError):
    """The storage root's filesystem has no known exclusive create, so the lease would not hold."""


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease file says: ``generation``, ``holder`` (free text), ``token`` (unique per acquire),
    ``acquired_at`` and ``expires_at`` (UTC, seconds since the epoch)."""

    generation: int
    holder: str
    token: str
    acquired_at: float
    expires_at: float

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "generation": self.generation,
                "holder": self.holder,
                "token": self.token,
                "acquired_at": self.acquired_at,
                "expires_at": self.expires_at,
                "expires_at_utc": datetime.fromtimestamp(self.expires_at, UTC).isoformat(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseInfo:
        d = json.loads(data)
        return cls(
            generation=int(d["generation"]),
            holder=str(d["holder"]),
            token=str(d["token"]),
            acquired_at=float(d["acquired_at"]),
            expires_at=float(d["expires_at"]),
        )


def default_holder(*, with_task: bool = True) -> str:
    """``host:pid`` plus the Airflow task instance from ``AIRFLOW_CTX_*`` when known (for people
    reading the lease file)."""
    ti = "/".join(
        os.environ[k]
        for k in ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_TASK_ID")
        if with_task and os.environ.get(k)
    )
    return f"{socket.gethostname()}:{os.getpid()}" + (f" {ti}" if ti else "")


def _protocol(path: ObjectStoragePath) -> str:
    proto = path.fs.protocol
    return (proto[0] if isinstance(proto, (tuple, list)) else proto) or "file"


def _is_local(path: ObjectStoragePath) -> bool:
    return _protocol(path) in ("file", "local")


def create_exclusive(path: ObjectStoragePath, data: bytes | IO[bytes]) -> bool:
    """Create ``path`` holding ``data`` (bytes or a binary file object read from its position) only if
    it does not exist. True if created, False if it existed.

    Local: temporary sibling + ``os.link`` (atomic, and the file is complete when it appears).
    Elsewhere: ``fs.open(path, "xb")`` (a conditional write on the protocols in
    :data:`EXCLUSIVE_CREATE_PROTOCOLS`).
    """

    def _write(fh: IO[bytes]) -> None:
        if isinstance(data, bytes | bytearray):
            fh.write(data)
        else:
            shutil.copyfileobj(data, fh, 1 << 20)

    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_local(path):
        target = path.path
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                _write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return True
    try:
        with path.fs.open(path.path, "xb") as fh:
            _write(fh)
    except FileExistsError:
        return False
    return True


class CounterLease:
    """The lease of one Metrika counter on the storage root; a context manager.

    ::

        with CounterLease(root, counter_id, ttl=120, wait=600) as lease:
            new = compute_new()          # read the ledger
            lease.check()                # raises LeaseLostError if superseded
            upload(new); record(new)

    :param root: the storage root (path or fsspec URL).
    :param counter_id: the Metrika counter.
    :param ttl: seconds a lease lives without renewal (a crashed holder blocks at most this long).
    :param wait: seconds to wait for a busy counter before :class:`CounterBusyError`.
    :param poll: seconds between looks at a busy lease (a little jitter is added).
    :param renew: renew in a background thread every ``ttl / 3`` seconds while held.
    :param holder: free text written into the lease (default: host, pid, task instance).
    :param clock: seconds since the epoch (injectable for tests).
    :raises LeaseUnsupportedError: the filesystem has no known exclusive create.
    """

    def __init__(
        self,
        root: str | ObjectStoragePath,
        counter_id: int,
        *,
        ttl: float = 120.0,
        wait: float = 900.0,
        poll: float = 1.0,
        renew: bool = True,
        holder: str | None = None,
        unsafe_protocols_ok: bool = False,
        clock: Any = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.counter_id = int(counter_id)
        self.dir = storage.lease_dir(root, self.counter_id)
        self.ttl = float(ttl)
        self.wait = float(wait)
        self.poll = float(poll)
        self.renew = renew
        self.holder = holder or default_holder()
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.generation: int | None = None
        self.waited = 0.0
        self.took_over: LeaseInfo | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unparsable_seen: dict[int, float] = {}
        proto = _protocol(self.dir)
        if not _is_local(self.dir) and proto not in EXCLUSIVE_CREATE_PROTOCOLS:
            if not unsafe_protocols_ok:
                raise LeaseUnsupportedError(
                    f"the storage root's filesystem {proto!r} has no known exclusive create, so the "
                    f"lease of counter {self.counter_id} would not hold (supported: local paths, "
                    f"{', '.join(sorted(EXCLUSIVE_CREATE_PROTOCOLS))})"
                )
            log.warning(
                "Counter %s: filesystem %r has no known exclusive create; the lease is best effort",
                self.counter_id,
                proto,
            )

    # -- files ----------------------------------------------------------------------------------
    def _lease_path(self, gen: int) -> ObjectStoragePath:
        return self.dir / f"lease-{gen:012d}.json"

    def _released_path(self, gen: int) -> ObjectStoragePath:
        return self.dir / f"released-{gen:012d}.json"

    def _scan(self) -> tuple[list[int], set[int]]:
        """(lease generations ascending, released generations)."""
        try:
            names = [p.name for p in self.dir.iterdir()]
        except (FileNotFoundError, NotADirectoryError):
            return [], set()
        leases = sorted(int(m.group(1)) for n in names if (m := _LEASE_RE.match(n)))
        released = {int(m.group(1)) for n in names if (m := _RELEASED_RE.match(n))}
        return leases, released

    def _read(self, gen: int) -> LeaseInfo | None:
        """The lease of ``gen``; None if it vanished. Unparsable -> expires ``ttl`` after first seen."""
        try:
            data = self._lease_path(gen).read_bytes()
            return LeaseInfo.from_bytes(data)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            first = self._unparsable_seen.setdefault(gen, self.clock())
            return LeaseInfo(gen, "<unreadable lease file>", "", first, first + self.ttl)

    def current(self) -> tuple[LeaseInfo | None, bool]:
        """The newest lease and whether it is free (released or expired); ``(None, True)`` if none."""
        leases, released = self._scan()
        if not leases:
            return None, True
        gen = leases[-1]
        info = self._read(gen)
        if info is None:
            return None, False  # changing right now: look again
        return info, gen in released or info.expires_at <= self.clock()

    # -- acquire / renew / release ----------------------------------------------------------------
    def acquire(self) -> CounterLease:
        """Wait (up to ``wait`` s) for the counter and take its lease; returns self.

        :raises CounterBusyError: still held by another run after ``wait`` seconds.
        """
        start = time.monotonic()
        while True:
            leases, released = self._scan()
            top = leases[-1] if leases else 0
            info = self._read(top) if top else None
            now = self.clock()
            free = top == 0 or top in released or (info is not None and info.expires_at <= now)
            if free:
                gen = top + 1
                mine = LeaseInfo(gen, self.holder, self.token, now, now + self.ttl)
                if create_exclusive(self._lease_path(gen), mine.to_bytes()):
                    self.generation = gen
                    self.waited = time.monotonic() - start
                    if info is not None and top not in released:
                        self.took_over = info
                        log.warning(
                            "Counter %s: took over the expired lease of %s (generation %d)",
                            self.counter_id,
                            info.holder,
                            top,
                        )
                    self._cleanup(gen)
                    if self.renew:
                        self._start_renewal()
                    log.info(
                        "Counter %s: lease generation %d held by %s (waited %.1f s)",
                        self.counter_id,
                        gen,
                        self.holder,
                        self.waited,
                    )
                    return self
                continue  # someone else created gen first: look again at once
            if time.monotonic() - start >= self.wait:
                holder = info.holder if info else "another run"
                raise CounterBusyError(
                    f"counter {self.counter_id} is busy: {holder} holds its lease (generation {top}) "
                    f"and did not release it within {self.wait:.0f} s; retrying later is safe"
                )
            time.sleep(self.poll * (0.75 + 0.5 * (uuid.uuid4().int % 1000) / 1000))

    def _cleanup(self, gen: int) -> None:
        """Delete superseded generations (best effort; the newest always stays)."""
        leases, released = self._scan()
        for g in leases:
            if g < gen:
                self._unlink(self._lease_path(g))
        for g in released:
            if g < gen:
                self._unlink(self._released_path(g))

    @staticmethod
    def _unlink(path: ObjectStoragePath) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - best effort
            log.debug("could not delete %s: %s", path, exc)

    def _superseded(self) -> bool:
        leases, _ = self._scan()
        return bool(leases) and leases[-1] != self.generation

    def renew_now(self) -> None:
        """Extend the lease by ``ttl`` from now (rewrites this generation's file).

        :raises LeaseLostError: the lease was superseded or had already expired.
        """
        gen = self._require()
        info = self._read(gen)
        now = self.clock()
        if info is None or info.token != self.token or info.expires_at <= now or self._superseded():
            self._lost.set()
            raise LeaseLostError(self._lost_message())
        renewed = LeaseInfo(gen, self.holder, self.token, info.acquired_at, now + self.ttl)
        storage.atomic_write_bytes(self._lease_path(gen), renewed.to_bytes())
        if self._superseded():  # someone took over between our read and our write
            self._lost.set()
            raise LeaseLostError(self._lost_message())

    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            try:
                self.renew_now()
            except LeaseLostError as exc:
                log.error("%s", exc)
                return
            except Exception as exc:  # storage hiccup: try again next interval, expiry is the guard
                log.warning("Counter %s: renewing the lease failed: %s", self.counter_id, exc)

    def _start_renewal(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-counter-{self.counter_id}", daemon=True
        )
        self._thread.start()

    def _require(self) -> int:
        if self.generation is None:
            raise LeaseError(f"the lease of counter {self.counter_id} is not held")
        return self.generation

    def _lost_message(self) -> str:
        return (
            f"the lease of counter {self.counter_id} (generation {self.generation}) was lost: it "
            "expired and another run took the counter over; stopping before any further upload"
        )

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless this run still holds the counter (call before uploading)."""
        gen = self._require()
        if self._lost.is_set():
            raise LeaseLostError(self._lost_message())
        info = self._read(gen)
        if info is None or info.token != self.token or info.expires_at <= self.clock() or self._superseded():
            self._lost.set()
            raise LeaseLostError(self._lost_message())

    def release(self) -> None:
        """Stop renewing and mark this generation released (the next contender takes ``N + 1``)."""
        if self.generation is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl)
            self._thread = None
        if not self._lost.is_set():
            try:
                create_exclusive(self._released_path(self.generation), b"{}")
            except OSError as exc:  # the lease will expire anyway
                log.warning("Counter %s: could not release the lease: %s", self.counter_id, exc)
        self.generation = None

    def __enter__(self) -> CounterLease:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
