"""The linkage report dataset: one small Parquet file per (pipeline, counter, day, upload).

Why per upload: a file is written once, when its upload has reached Metrika's final status, and never
changes afterwards (the first observation wins), so concurrent runs, retries and top-up uploads never
write the same file twice; the reader merges the files of a day into one row (:func:`daily_rows`).

Layout (``storage.linkage_path``)::

    {root}/metrika/linkage/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.upload-{upload_id}.parquet
    {root}/metrika/linkage/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.no-upload.parquet

The ``no-upload`` file is a day with nothing to upload (no calls, or every call rejected); a re-run of
that day replaces it. Dry runs write nothing.

Columns of a file (one row; :data:`BASE_SCHEMA` plus one ``rejected_<reason>`` column per reason):

============================  =====================  ==================================================
column                        type                   meaning
============================  =====================  ==================================================
``pipeline``                  string                 pipeline name (``pipelines.yaml``)
``counter_id``                int64                  Metrika counter
``site_id``                   int64                  Calltouch site
``day``                       date32                 local day (first day of the run's interval)
``day_to``                    date32                 last local day of the interval (= ``day`` daily)
``upload_id``                 int64, null            Metrika upload id; null in a ``no-upload`` file
``upload_kind``               string                 ``first`` | ``topup`` | ``none``
``comment``                   string, null           the upload's comment
``dag_id``, ``run_id``        string                 the DAG run that reported it (links in the UI)
``extracted``                 int64                  calls extracted for the day by that run
``uploaded``                  int64                  rows of this upload's CSV (the run's when none)
``rejected``                  int64                  calls rejected by that run (all reasons)
``already_uploaded``          int64                  calls of the day an earlier upload sent (a top-up
                                                     run; ``extracted = uploaded + rejected + this``)
``rejected_<reason>``         int64                  rejected with ``<reason>`` (``transforms.calls.REASONS``;
                                                     e.g. ``rejected_missing_identifier``), 0 if none
``status``                    string, null           Metrika's final status: ``PROCESSED`` | ``LINKAGE_FAILURE``
``source_quantity``           int64, null            rows in the file, as Metrika counted them
``line_quantity``             int64, null            rows that passed Metrika's validation
``linked_quantity``           int64, null            calls linked to a visit (null: Metrika did not say)
``static_calls_quantity``     int64, null            static calls (never linked; they reach call reports)
``dynamic_calls_quantity``    int64, null            dynamic calls
``user_not_found_quantity``   int64, null            identifier unknown to the counter
``goal_not_found_quantity``   int64, null            no calls goal
``other_quantities``          map<string, int64>     any other ``*_quantity`` field Metrika returned
``client_id_type``            string, null           ``CLIENT_ID`` | ``USER_ID`` | ``YCLID``
``upload_created_at``         timestamp[us, UTC]     the upload's ``create_time``
``final_status_at``           timestamp[us, UTC]     when the final status was first observed
``seconds_to_final``          float64, null          ``final_status_at - upload_created_at``
``linked_share``              float64, null          ``linked_quantity / line_quantity``
``reported_at``               timestamp[us, UTC]     when this file was written
============================  =====================  ==================================================

The ``uploading`` fields are those of api-notes §3.4 (``OfflineCallsUploading``: ``source_quantity``,
``line_quantity``, ``static_calls_quantity``, ``dynamic_calls_quantity``; the newest EN page adds
``linked_quantity``, ``user_not_found_quantity``, ``goal_not_found_quantity``, all optional).

Query it with anything that reads Parquet, e.g. DuckDB:
``SELECT day, sum(linked_quantity) FROM 'data/metrika/linkage/**/*.parquet' GROUP BY day``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from calltouch_metrika import storage
from calltouch_metrika.constants import UPLOAD_TERMINAL_STATUSES

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

__all__ = [
    "FINAL_STATUSES",
    "QUANTITIES",
    "LinkageUpload",
    "base_schema",
    "daily_rows",
    "linkage_row",
    "read_rows",
    "reason_column",
    "write_linkage",
]

#: Metrika's terminal upload statuses (api-notes §3.4; ``constants.UPLOAD_TERMINAL_STATUSES``).
FINAL_STATUSES = tuple(sorted(UPLOAD_TERMINAL_STATUSES))
#: The ``uploading`` quantities kept as their own columns (api-notes §3.4); others go to ``other_quantities``.
QUANTITIES = (
    "source_quantity",
    "line_quantity",
    "linked_quantity",
    "static_calls_quantity",
    "dynamic_calls_quantity",
    "user_not_found_quantity",
    "goal_not_found_quantity",
)
_REASON_PREFIX = "rejected_"
_REASON_RE = re.compile(r"^[a-z0-9_]+$")


def reason_column(reason: str) -> str:
    """The column of a reject reason: ``missing_identifier`` -> ``rejected_missing_identifier``.

    :raises ValueError: a reason that is not a lower-case identifier (it would make a bad column name).
    """
    if not _REASON_RE.match(reason):
        raise ValueError(f"not a reject reason code: {reason!r}")
    return _REASON_PREFIX + reason


def _known_reasons() -> list[str]:
    from calltouch_metrika.transforms.calls import REASONS

    return list(REASONS)


def base_schema() -> pa.Schema:
    """The columns every file has (the ``rejected_<reason>`` columns come after them)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("pipeline", pa.string()),
            ("counter_id", pa.int64()),
            ("site_id", pa.int64()),
            ("day", pa.date32()),
            ("day_to", pa.date32()),
            ("upload_id", pa.int64()),
            ("upload_kind", pa.string()),
            ("comment", pa.string()),
            ("dag_id", pa.string()),
            ("run_id", pa.string()),
            ("extracted", pa.int64()),
            ("uploaded", pa.int64()),
            ("rejected", pa.int64()),
            ("already_uploaded", pa.int64()),
            ("status", pa.string()),
            *[(q, pa.int64()) for q in QUANTITIES],
            ("other_quantities", pa.map_(pa.string(), pa.int64())),
            ("client_id_type", pa.string()),
            ("upload_created_at", ts),
            ("final_status_at", ts),
            ("seconds_to_final", pa.float64()),
            ("linked_share", pa.float64()),
            ("reported_at", ts),
        ]
    )


@dataclass(frozen=True)
class LinkageUpload:
    """What a run knows about one day's upload: its counts (upload task) and Metrika's final record.

    :param counts: the upload task's counts: ``extracted``, ``uploaded``, ``rejected``,
        ``rejects_by_reason`` (a mapping reason -> calls).
    :param uploading: Metrika's final ``uploading`` record (api-notes §3.4), or None when nothing was
        uploaded.
    :param uploaded: the rows of this upload's CSV when a run made several uploads (first + top-ups);
        None -> ``counts["uploaded"]``.
    """

    pipeline: str
    counter_id: int
    site_id: int
    day: date
    day_to: date
    dag_id: str
    run_id: str
    counts: Mapping[str, Any]
    uploading: Mapping[str, Any] | None
    upload_kind: str = "first"
    comment: str | None = None
    uploaded: int | None = None


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def linkage_row(upload: LinkageUpload, *, now: datetime) -> dict[str, Any]:
    """The dataset row of one upload (pure). ``now`` is when the final status is observed.

    :raises ValueError: the counts do not reconcile (uploaded + rejected > extracted, or the reasons
        do not add up to rejected), or the record is not final.
    """
    c = upload.counts
    extracted, uploaded, rejected = int(c["extracted"]), int(c["uploaded"]), int(c["rejected"])
    by_reason = {str(k): int(v) for k, v in dict(c.get("rejects_by_reason") or {}).items()}
    already = extracted - uploaded - rejected  # a top-up run: calls an earlier upload of the day sent
    if already < 0 or sum(by_reason.values()) != rejected:
        raise ValueError(
            f"counts do not reconcile: extracted {extracted}, uploaded {uploaded}, rejected {rejected}, "
            f"by reason {by_reason}"
        )
    rec = dict(upload.uploading or {})
    status = rec.get("status")
    if rec and status not in FINAL_STATUSES:
        raise ValueError(f"upload {rec.get('id')} is not final yet (status {status!r})")
    created = _parse_time(rec.get("create_time"))
    final_at = now if rec else None
    quantities = {q: _int_or_none(rec.get(q)) for q in QUANTITIES}
    other = {
        k: int(v)
        for k, v in sorted(rec.items())
        if k.endswith("_quantity") and k not in QUANTITIES and _int_or_none(v) is not None
    }
    linked, lines = quantities["linked_quantity"], quantities["line_quantity"]
    row: dict[str, Any] = {
        "pipeline": upload.pipeline,
        "counter_id": int(upload.counter_id),
        "site_id": int(upload.site_id),
        "day": upload.day,
        "day_to": upload.day_to,
        "upload_id": _int_or_none(rec.get("id")),
        "upload_kind": upload.upload_kind if rec else "none",
        "comment": rec.get("comment", upload.comment),
        "dag_id": upload.dag_id,
        "run_id": upload.run_id,
        "extracted": extracted,
        "uploaded": uploaded if upload.uploaded is None else int(upload.uploaded),
        "rejected": rejected,
        "already_uploaded": already,
        "status": status,
        **quantities,
        "other_quantities": other,
        "client_id_type": rec.get("client_id_type"),
        "upload_created_at": created,
        "final_status_at": final_at,
        "seconds_to_final": (final_at - created).total_seconds() if created and final_at else None,
        "linked_share": (linked / lines) if linked is not None and lines else None,
        "reported_at": now,
    }
    for reason in sorted(set(_known_reasons()) | set(by_reason)):
        row[reason_column(reason)] = by_reason.get(reason, 0)
    return row


def _table(row: Mapping[str, Any]) -> pa.Table:
    import pyarrow as pa

    schema = base_schema()
    reasons = sorted(k for k in row if k.startswith(_REASON_PREFIX))
    schema = pa.schema([*schema, *[(r, pa.int64()) for r in reasons]])
    values = dict(row)
    values["other_quantities"] = list(dict(row.get("other_quantities") or {}).items())
    return pa.Table.from_pylist([values], schema=schema)


def write_linkage(root: str | ObjectStoragePath, row: Mapping[str, Any]) -> tuple[ObjectStoragePath, bool]:
    """Write one row's file; return ``(path, written)``.

    An upload's file is written once: if it exists already (a re-run, a retry, a concurrent run of the
    same day), it is kept and ``written`` is False, so the first observation of the final status stays.
    A ``no-upload`` file is replaced (atomically) by a re-run of its day.
    """
    import pyarrow.parquet as pq

    path = storage.linkage_path(root, row["counter_id"], row["day"], row["pipeline"], row["upload_id"])
    if row["upload_id"] is not None and path.exists():
        return path, False
    buf = io.BytesIO()
    pq.write_table(_table(row), buf, compression="zstd")
    storage.atomic_write_bytes(path, buf.getvalue())
    return path, True


def _day_dirs(
    root: str | ObjectStoragePath, counter_id: int, first: date, last: date
) -> Iterable[ObjectStoragePath]:
    base = storage.linkage_dir(root, counter_id)
    if not base.exists():
        return []
    out = []
    for d in base.iterdir():
        name = d.name
        if not name.startswith("date="):
            continue
        try:
            day = date.fromisoformat(name.removeprefix("date=")[:10])
        except ValueError:
            continue
        if first <= day <= last:
            out.append(d)
    return sorted(out, key=lambda p: p.name)


def read_rows(
    root: str | ObjectStoragePath, *, pipeline: str, counter_id: int, first: date, last: date
) -> list[dict[str, Any]]:
    """Every file's row of ``pipeline`` on ``counter_id`` for local days ``first..last`` (inclusive).

    Files written by older versions (fewer ``rejected_<reason>`` columns) read with those reasons at 0.
    """
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    prefix = f"{pipeline}."
    for directory in _day_dirs(root, counter_id, first, last):
        for f in sorted(directory.iterdir(), key=lambda p: p.name):
            if not (f.name.startswith(prefix) and f.name.endswith(".parquet")):
                continue
            with f.open("rb") as fh:
                table = pq.read_table(io.BytesIO(fh.read()), use_threads=False)  # tiny files
            for row in table.to_pylist():
                row["other_quantities"] = dict(row.get("other_quantities") or [])
                rows.append(row)
    return rows


def _sum(values: Iterable[Any]) -> int | None:
    present = [int(v) for v in values if v is not None]
    return sum(present) if present else None


def daily_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Merge file rows into one row per (pipeline, counter, day), oldest day first (pure).

    * ``extracted``, ``rejected`` and ``rejected_by_reason`` come from the latest report of the day
      (the latest extraction of that day);
    * ``uploaded`` and every Metrika quantity are summed over the day's uploads (first + top-ups);
      ``uploaded_first`` / ``uploaded_topups`` split it;
    * ``status`` is the uploads' final status (joined with ``,`` when they differ);
    * ``seconds_to_final`` is the longest of the uploads'; ``linked_share`` = linked / line quantity;
    * ``runs`` lists the DAG runs that reported the day (latest first).

    A day whose only row is ``no-upload`` keeps ``status`` and the quantities at None.
    """
    groups: dict[tuple[str, int, date], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["pipeline"], int(r["counter_id"]), r["day"]), []).append(r)
    out = []
    for (pipeline, counter_id, day), group in sorted(groups.items(), key=lambda kv: kv[0]):
        by_time = sorted(group, key=lambda r: r["reported_at"] or datetime.min.replace(tzinfo=UTC))
        latest = by_time[-1]
        uploads = {int(r["upload_id"]): r for r in by_time if r.get("upload_id") is not None}
        ups = list(uploads.values())
        reasons = {
            k.removeprefix(_REASON_PREFIX): int(v or 0)
            for k, v in latest.items()
            if k.startswith(_REASON_PREFIX) and v
        }
        statuses = sorted({str(r["status"]) for r in ups if r.get("status")})
        quantities = {q: _sum(r.get(q) for r in ups) for q in QUANTITIES}
        other: dict[str, int] = {}
        for r in ups:
            for k, v in dict(r.get("other_quantities") or {}).items():
                other[k] = other.get(k, 0) + int(v)
        linked, lines = quantities["linked_quantity"], quantities["line_quantity"]
        seconds = [r["seconds_to_final"] for r in ups if r.get("seconds_to_final") is not None]
        runs: list[dict[str, str]] = []
        for r in reversed(by_time):
            ref = {"dag_id": r["dag_id"], "run_id": r["run_id"]}
            if ref not in runs:
                runs.append(ref)
        out.append(
            {
                "pipeline": pipeline,
                "counter_id": counter_id,
                "site_id": int(latest["site_id"]),
                "day": day.isoformat(),
                "extracted": int(latest["extracted"]),
                "rejected": int(latest["rejected"]),
                "already_uploaded": int(latest.get("already_uploaded") or 0),
                "rejected_by_reason": dict(sorted(reasons.items())),
                "uploaded": sum(int(r["uploaded"]) for r in ups),
                "uploaded_first": sum(int(r["uploaded"]) for r in ups if r.get("upload_kind") != "topup"),
                "uploaded_topups": sum(int(r["uploaded"]) for r in ups if r.get("upload_kind") == "topup"),
                "uploads": len(ups),
                "upload_ids": sorted(uploads),
                "status": ",".join(statuses) or None,
                **quantities,
                "other_quantities": other,
                "seconds_to_final": max(seconds) if seconds else None,
                "linked_share": (linked / lines) if linked is not None and lines else None,
                "runs": runs,
            }
        )
    return out


def window(days: int, *, today: date) -> tuple[date, date]:
    """The ``days`` local days ending yesterday (``today`` excluded: it is not complete)."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    last = today - timedelta(days=1)
    return last - timedelta(days=days - 1), last
