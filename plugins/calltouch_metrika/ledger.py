"""The call ledger of a Metrika counter: which Calltouch calls were sent to it, when, in which upload.

Why per counter and per call: Metrika does not document deduplication of repeated calls
(api-notes §3.4, which recommends exactly this: "keep an upload ledger keyed by (counterId, callId)
and never re-send calls already in a successful upload"). Two pipelines, two runs or a late top-up
may all send to one counter; the ledger is the one place that says whether a call is already there.

Layout (``storage.ledger_dir``): one immutable Parquet file per (upload part, state)::

    {root}/metrika/ledger/counter={counter_id}/{day}.{pipeline}.part{NNNN}.{state}.parquet
    {root}/metrika/ledger/counter={counter_id}/compacted-{token}.parquet   (see :meth:`CallLedger.compact`)

Each file is created once (exclusive create, ``lease.create_exclusive``) and never rewritten, so
the ledger works the same on a local disk and on object storage where a rename is not atomic. A
state change of a part is a *new* file (``sending`` -> ``sent`` -> ``confirmed``, or ``failed``);
the ledger is the union of all rows, and a part's state is the most advanced state recorded for it.
Only one writer per counter runs at a time (``lease.CounterLease``), the files are named
deterministically by (day, pipeline, part, state), so a retried step finds its own file.

Columns (:data:`SCHEMA`; every file has exactly these, so the folder reads as one Parquet dataset:
``pyarrow.dataset.dataset("…/metrika/ledger/counter=20001", format="parquet")`` or
``duckdb "select * from '…/counter=20001/*.parquet'"``):

=============  ====================  ==========================================================
column         type                  meaning
=============  ====================  ==========================================================
counter_id     int64                 the Metrika counter
site_id        int64                 the Calltouch site (ЛК)
call_id        int64                 the Calltouch ``callId``
pipeline       string                the pipeline that sent it
day            date32                the call's local day (the pipeline's time zone)
part           int32                 the upload part of (pipeline, day): 1, 2, …; 0 = imported
                                     from an upload made before the ledger existed
comment        string                the upload's comment (deterministic per pipeline, day, part)
upload_id      int64 (null)          Metrika's upload id; null while ``sending`` or ``failed``
state          string                ``sending`` (about to be sent; outcome not yet known),
                                     ``sent`` (Metrika returned an upload id), ``confirmed``
                                     (the upload reached a terminal status; recorded by the
                                     next run's reconcile), ``failed`` (Metrika
                                     did not store the upload: the calls are free to send again)
forced         bool                  sent again on purpose (``force_reupload``)
sent_at        timestamp[us, UTC]    when the upload request was sent
recorded_at    timestamp[us, UTC]    when this row was written
source         string                ``upload``, ``lookup`` (outcome learnt by the comment
                                     lookup after a lost response) or ``import`` (upgrade)
status         string (null)         Metrika's upload status when known (``PROCESSED``, …)
=============  ====================  ==========================================================
"""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from calltouch_metrika import storage
from calltouch_metrika.lease import create_exclusive

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

COMMENT_PREFIX = "calltouch-metrika"
MAX_COMMENT = 255

#: States in the order a part goes through them (``failed`` replaces ``sent`` when not stored).
STATES = ("sending", "failed", "sent", "confirmed")
_RANK = {s: i for i, s in enumerate(STATES)}
#: States whose calls count as "in Metrika" (``sending`` too: its outcome must be resolved first).
HELD_STATES = frozenset({"sending", "sent", "confirmed"})
#: Metrika's terminal upload statuses (api-notes §3.4).
TERMINAL_STATUSES = frozenset({"PROCESSED", "LINKAGE_FAILURE"})

SCHEMA = pa.schema(
    [
        ("counter_id", pa.int64()),
        ("site_id", pa.int64()),
        ("call_id", pa.int64()),
        ("pipeline", pa.string()),
        ("day", pa.date32()),
        ("part", pa.int32()),
        ("comment", pa.string()),
        ("upload_id", pa.int64()),
        ("state", pa.string()),
        ("forced", pa.bool_()),
        ("sent_at", pa.timestamp("us", tz="UTC")),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("source", pa.string()),
        ("status", pa.string()),
    ]
)

_FILE_RE = re.compile(
    r"^(?P<day>\d{4}-\d{2}-\d{2})\.(?P<pipeline>[a-z0-9_]+)\.part(?P<part>\d{4})\.(?P<state>[a-z]+)\.parquet$"
)
_CALL_ID_IN_URL = re.compile(r"[?&]callId=(\d+)")


def part_comment(pipeline: str, site_id: int, day: date, part: int) -> str:
    """The deterministic comment of upload ``part`` of ``pipeline``'s ``day``, at most 255 characters.

    Only Latin letters, digits, spaces, ``-`` and ``_`` (api-notes §3.2: the comment is free text of
    digits and letters). E.g. ``calltouch-metrika demo site 10001 2026-11-23 part 2``.
    """
    comment = f"{COMMENT_PREFIX} {pipeline} site {int(site_id)} {day.isoformat()} part {int(part)}"
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"upload comment longer than {MAX_COMMENT} characters: {comment!r}")
    return comment


def legacy_comment(pipeline: str, site_id: int, day: date) -> str:
    """The comment uploads had before the ledger existed (one upload per pipeline and day)."""
    return f"{COMMENT_PREFIX} {pipeline} site {int(site_id)} {day.isoformat()}"


def call_ids_from_csv(data: bytes) -> list[int] | None:
    """The ``callId`` of each row of a Metrika calls CSV we wrote, read from its ``CallTrackerURL``.

    None if the CSV has no ``CallTrackerURL`` column or a row's URL names no ``callId`` (then the
    caller matches rows another way). Pure: no I/O.
    """
    import csv

    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    if not reader.fieldnames or "CallTrackerURL" not in reader.fieldnames:
        return None
    ids: list[int] = []
    for row in reader:
        m = _CALL_ID_IN_URL.search(row.get("CallTrackerURL") or "")
        if not m:
            return None
        ids.append(int(m.group(1)))
    return ids


@dataclass(frozen=True, order=True)
class PartKey:
    """One upload part: ``(pipeline, day, part)``."""

    pipeline: str
    day: date
    part: int


@dataclass(frozen=True)
class PartState:
    """What the ledger knows about one part: its most advanced state and that state's facts."""

    key: PartKey
    site_id: int
    state: str
    comment: str
    upload_id: int | None
    forced: bool
    status: str | None
    call_ids: tuple[int, ...]


def _utc(ts: datetime | None) -> datetime:
    if ts is None:
        return datetime.now(UTC)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class CallLedger:
    """The ledger of one counter on the storage root (see the module docstring).

    Reads are snapshots: call :meth:`read` (or :meth:`refresh`) after acquiring the counter's lease.

    :param root: the storage root (path or fsspec URL).
    :param counter_id: the Metrika counter.
    """

    def __init__(self, root: str | ObjectStoragePath, counter_id: int) -> None:
        self.counter_id = int(counter_id)
        self.dir = storage.ledger_dir(root, self.counter_id)
        self._table: pa.Table | None = None
        self._best_rows: pa.Table | None = None
        self._parts: dict[PartKey, PartState] | None = None

    # -- reading --------------------------------------------------------------------------------
    def files(self) -> list[ObjectStoragePath]:
        """The ledger's Parquet files (parts and compacted files), sorted by name."""
        try:
            return sorted(
                (p for p in self.dir.iterdir() if p.name.endswith(".parquet")), key=lambda p: p.name
            )
        except (FileNotFoundError, NotADirectoryError):
            return []

    def refresh(self) -> pa.Table:
        """Read every file again; returns all rows (:data:`SCHEMA`)."""
        tables = [pq.read_table(io.BytesIO(p.read_bytes())).cast(SCHEMA) for p in self.files()]
        self._table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        self._best_rows = self._parts = None
        return self._table

    def read(self) -> pa.Table:
        """All rows (cached after the first read; :meth:`refresh` re-reads)."""
        return self._table if self._table is not None else self.refresh()

    def _best(self) -> pa.Table:
        """The rows of each part's most advanced state (Arrow; no per-row Python objects, no join).

        Each row gets an int64 part key (pipeline code, day, part); the best rank per key is found by
        a group-by over the keys, and rows are kept whose (key, rank) is a best pair.
        """
        if self._best_rows is None:
            import numpy as np
            import pyarrow.compute as pc

            t = self.read()
            if t.num_rows == 0:
                self._best_rows = t
                return t
            rank = pc.index_in(t["state"], value_set=pa.array(STATES)).to_numpy(zero_copy_only=False)
            pipe = pc.dictionary_encode(t["pipeline"]).combine_chunks().indices.to_numpy(zero_copy_only=False)
            day = pc.cast(t["day"], pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
            part = t["part"].to_numpy(zero_copy_only=False).astype(np.int64)
            key = (pipe.astype(np.int64) << 40) | (day << 16) | part
            combo = key * 8 + rank
            keys = pa.table({"k": key, "c": combo})
            top = keys.group_by("k").aggregate([("c", "max")])["c_max"]
            self._best_rows = t.filter(pc.is_in(pa.array(combo), value_set=top))
        return self._best_rows

    def parts(self) -> dict[PartKey, PartState]:
        """Each part's most advanced state (computed once per read)."""
        if self._parts is not None:
            return self._parts
        best = self._best()
        out: dict[PartKey, PartState] = {}
        if best.num_rows:
            agg = best.group_by(["pipeline", "day", "part"], use_threads=False).aggregate(
                [
                    ("site_id", "first"),
                    ("state", "first"),
                    ("comment", "first"),
                    ("upload_id", "first"),
                    ("forced", "first"),
                    ("status", "first"),
                    ("call_id", "distinct"),
                ]
            )
            for r in agg.to_pylist():
                key = PartKey(r["pipeline"], r["day"], int(r["part"]))
                out[key] = PartState(
                    key=key,
                    site_id=int(r["site_id_first"]),
                    state=r["state_first"],
                    comment=r["comment_first"],
                    upload_id=r["upload_id_first"],
                    forced=bool(r["forced_first"]),
                    status=r["status_first"],
                    call_ids=tuple(sorted(r["call_id_distinct"])),
                )
        self._parts = out
        return out

    def held_call_id_array(self, site_id: int) -> Any:
        """:meth:`held_call_ids` as a sorted numpy ``int64`` array (cheap for large ledgers)."""
        import numpy as np
        import pyarrow.compute as pc

        best = self._best()
        mask = pc.and_(
            pc.is_in(best["state"], value_set=pa.array(sorted(HELD_STATES))),
            pc.equal(best["site_id"], int(site_id)),
        )
        return np.unique(best.filter(mask)["call_id"].to_numpy())

    def held_calls(self, site_id: int | None = None) -> set[tuple[int, int]]:
        """``(site_id, call_id)`` of every call sent or being sent to this counter, by any pipeline."""
        out: set[tuple[int, int]] = set()
        for st in self.parts().values():
            if st.state in HELD_STATES and (site_id is None or st.site_id == int(site_id)):
                out.update((st.site_id, c) for c in st.call_ids)
        return out

    def held_call_ids(self, site_id: int) -> set[int]:
        """The ``callId`` of ``site_id``'s calls already sent (or being sent) to this counter."""
        return set(self.held_call_id_array(site_id).tolist())

    def pending(self) -> list[PartState]:
        """Parts recorded as ``sending`` whose outcome was never learnt (a crash or a lost response)."""
        return sorted((s for s in self.parts().values() if s.state == "sending"), key=lambda s: s.key)

    def unconfirmed(self) -> list[PartState]:
        """Parts ``sent`` whose upload has not been seen in a terminal status yet."""
        return sorted((s for s in self.parts().values() if s.state == "sent"), key=lambda s: s.key)

    def next_part(self, pipeline: str, day: date) -> int:
        """The next part number of ``(pipeline, day)`` (1 for the first upload)."""
        used = [k.part for k in self.parts() if k.pipeline == pipeline and k.day == day]
        return max(used, default=0) + 1

    def has_day(self, pipeline: str, day: date) -> bool:
        """Whether ``pipeline`` has recorded any part for ``day``."""
        return any(k.pipeline == pipeline and k.day == day for k in self.parts())

    # -- writing --------------------------------------------------------------------------------
    def part_path(self, key: PartKey, state: str) -> ObjectStoragePath:
        """The file of ``key`` in ``state``."""
        return self.dir / f"{key.day.isoformat()}.{key.pipeline}.part{key.part:04d}.{state}.parquet"

    def record(
        self,
        key: PartKey,
        state: str,
        *,
        site_id: int,
        call_ids: Iterable[int],
        comment: str,
        upload_id: int | None = None,
        forced: bool = False,
        sent_at: datetime | None = None,
        source: str = "upload",
        status: str | None = None,
    ) -> bool:
        """Write the file of ``key`` in ``state`` listing ``call_ids``; False if it already existed.

        Write once: an existing file is kept as it is (a retried step finds its own record).
        :raises ValueError: unknown ``state``, or a ``sent``/``confirmed`` record without ``upload_id``.
        """
        if state not in _RANK:
            raise ValueError(f"unknown ledger state {state!r} (one of {', '.join(STATES)})")
        if state in ("sent", "confirmed") and upload_id is None:
            raise ValueError(f"a {state!r} ledger record needs the upload id")
        ids = [int(c) for c in call_ids]
        n = len(ids)
        now = datetime.now(UTC)
        table = pa.table(
            {
                "counter_id": pa.array([self.counter_id] * n, pa.int64()),
                "site_id": pa.array([int(site_id)] * n, pa.int64()),
                "call_id": pa.array(ids, pa.int64()),
                "pipeline": pa.array([key.pipeline] * n, pa.string()),
                "day": pa.array([key.day] * n, pa.date32()),
                "part": pa.array([key.part] * n, pa.int32()),
                "comment": pa.array([comment] * n, pa.string()),
                "upload_id": pa.array([upload_id] * n, pa.int64()),
                "state": pa.array([state] * n, pa.string()),
                "forced": pa.array([bool(forced)] * n, pa.bool_()),
                "sent_at": pa.array([_utc(sent_at)] * n, pa.timestamp("us", tz="UTC")),
                "recorded_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
                "source": pa.array([source] * n, pa.string()),
                "status": pa.array([status] * n, pa.string()),
            },
            schema=SCHEMA,
        )
        buf = io.BytesIO()
        pq.write_table(table, buf)
        created = create_exclusive(self.part_path(key, state), buf.getvalue())
        self._table = self._best_rows = self._parts = None
        return created

    def compact(self) -> int:
        """Merge the part files into one ``compacted-…`` file, then delete them; returns files merged.

        Run it under the counter's lease. Safe on object storage: the merged file is complete before
        any part is deleted, and a row present twice (merged and not yet deleted) changes nothing,
        because a part's state is derived from the set of rows.
        """
        files = self.files()
        if len(files) < 2:
            return 0
        table = self.refresh()
        buf = io.BytesIO()
        pq.write_table(table, buf)
        create_exclusive(self.dir / f"compacted-{uuid.uuid4().hex}.parquet", buf.getvalue())
        for p in files:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self._table = self._best_rows = self._parts = None
        return len(files)


def parse_part_file(name: str) -> tuple[PartKey, str] | None:
    """``(PartKey, state)`` from a part file name, None for other files (e.g. compacted ones)."""
    m = _FILE_RE.match(name)
    if not m:
        return None
    return PartKey(m["pipeline"], date.fromisoformat(m["day"]), int(m["part"])), m["state"]
