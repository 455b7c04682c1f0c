"""Where the datasets live: one layout, expressed as :class:`ObjectStoragePath` (any fsspec URL).

Why one module: the extract, upload, requests and plans tasks (and the people reading the files)
must agree on the paths. The layout (docs/design.md "Datasets on storage")::

    {root}/calltouch/calls/site={site_id}/date={YYYY-MM-DD}/calls.parquet
    {root}/calltouch/requests/site={site_id}/date={YYYY-MM-DD}/requests.parquet
    {root}/metrika/calls_csv/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.csv
    {root}/metrika/rejects/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.parquet
    {root}/calltouch/plans_ledger/site={site_id}/{sha256}.json
    {root}/calltouch/account_extracts/account={account}/date={YYYY-MM-DD}/{pipeline}.json
    {root}/metrika/linkage/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.upload-{id}.parquet
    {root}/metrika/ledger/counter={counter_id}/{day}.{pipeline}.part{NNNN}.{state}.parquet
    {root}/metrika/locks/counter={counter_id}/lease-{generation}.json
    {root}/metrika/uploads/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.part{NNNN}.csv
    {root}/metrika/dry_runs/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.{run}.csv

``root`` is a plain local path (``/data``, ``~/data``, ``data`` relative to the working directory)
or a URL (``file:///data``, ``s3://bucket/prefix``, ``s3://conn_id@bucket/prefix``).
Writes are atomic per file: a temporary sibling is written, then moved over the final name, so a
reader never sees half a file and a re-run simply replaces its own partition.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal

from airflow.sdk import ObjectStoragePath

from calltouch_metrika.constants import LEDGER_SUCCEEDED

Kind = Literal["calls", "requests"]


def root_path(root: str | ObjectStoragePath) -> ObjectStoragePath:
    """``root`` as an :class:`ObjectStoragePath`; a plain path becomes an absolute ``file://`` URL."""
    if isinstance(root, ObjectStoragePath):
        return root
    text = str(root).strip()
    if "://" not in text:
        text = Path(text).expanduser().resolve().as_uri()
    return ObjectStoragePath(text)


def _day(d: date | str) -> str:
    return d if isinstance(d, str) else d.isoformat()


def day_label(date_from: date, date_to: date) -> str:
    """The ``date=`` partition value for the half-open interval ``[date_from, date_to)``.

    One day (the normal daily run) -> ``YYYY-MM-DD``; a longer interval -> ``YYYY-MM-DD..YYYY-MM-DD``
    (both ends inclusive), so runs over different intervals never overwrite each other.
    """
    last = date_to - timedelta(days=1)
    if last <= date_from:
        return date_from.isoformat()
    return f"{date_from.isoformat()}..{last.isoformat()}"


def _day_file(
    root: str | ObjectStoragePath, system: str, dataset: str, owner: str, day: date | str, filename: str
) -> ObjectStoragePath:
    """``{root}/{system}/{dataset}/{owner}/date={day}/{filename}``: the one shape of every per-day file."""
    return root_path(root) / system / dataset / owner / f"date={_day(day)}" / filename


def extract_path(
    root: str | ObjectStoragePath, kind: Kind, site_id: int, day: date | str
) -> ObjectStoragePath:
    """The Parquet file of one local day of Calltouch ``kind`` records for ``site_id``."""
    return _day_file(root, "calltouch", kind, f"site={int(site_id)}", day, f"{kind}.parquet")


def account_manifest_path(
    root: str | ObjectStoragePath, account: str, day: date | str, pipeline: str
) -> ObjectStoragePath:
    """What an account extract wrote for ``pipeline``'s run of local ``day``: the extract summary (JSON).

    Written last, after the pipeline's calls files; the pipeline's ``extract`` task waits for it
    (:class:`~calltouch_metrika.operators.calltouch.CalltouchExtractOperator` with ``account``).
    """
    return _day_file(root, "calltouch", "account_extracts", f"account={account}", day, f"{pipeline}.json")


def read_json(path: ObjectStoragePath) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when there is none or it is unreadable (not JSON, not an
    object, an I/O error): every JSON file here is written atomically and can be written again, so a
    file that cannot be read means what a missing one means."""
    try:
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: ObjectStoragePath, data: dict[str, Any]) -> ObjectStoragePath:
    """Write ``data`` as UTF-8 JSON to ``path`` atomically (:func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"))


def calls_path(root: str | ObjectStoragePath, site_id: int, day: date | str) -> ObjectStoragePath:
    """The extracted calls of one day (shortcut of :func:`extract_path`)."""
    return extract_path(root, "calls", site_id, day)


def requests_path(root: str | ObjectStoragePath, site_id: int, day: date | str) -> ObjectStoragePath:
    """The extracted requests (заявки) of one day."""
    return extract_path(root, "requests", site_id, day)


def metrika_csv_path(
    root: str | ObjectStoragePath, counter_id: int, day: date | str, pipeline: str
) -> ObjectStoragePath:
    """The Metrika calls CSV that was (or in dry run would be) uploaded for ``pipeline`` and ``day``."""
    return _day_file(root, "metrika", "calls_csv", f"counter={int(counter_id)}", day, f"{pipeline}.csv")


def rejects_path(
    root: str | ObjectStoragePath, counter_id: int, day: date | str, pipeline: str
) -> ObjectStoragePath:
    """The calls of ``day`` that could not be uploaded, with their reason codes (Parquet)."""
    return _day_file(root, "metrika", "rejects", f"counter={int(counter_id)}", day, f"{pipeline}.parquet")


def plans_ledger_path(root: str | ObjectStoragePath, site_id: int, sha256: str) -> ObjectStoragePath:
    """The plans ledger entry of one batch (keyed by the batch's hash); see :func:`read_plans_ledger_entry`."""
    return root_path(root) / "calltouch" / "plans_ledger" / f"site={int(site_id)}" / f"{sha256}.json"


def linkage_dir(root: str | ObjectStoragePath, counter_id: int) -> ObjectStoragePath:
    """The linkage report files of one counter (``linkage.dataset``), one ``date=`` folder per day."""
    return root_path(root) / "metrika" / "linkage" / f"counter={int(counter_id)}"


def linkage_path(
    root: str | ObjectStoragePath, counter_id: int, day: date | str, pipeline: str, upload_id: int | None
) -> ObjectStoragePath:
    """One upload's linkage report row (``{pipeline}.upload-{id}.parquet``; ``{pipeline}.no-upload.parquet``
    for a day with nothing uploaded)."""
    name = (
        f"{pipeline}.no-upload.parquet"
        if upload_id is None
        else f"{pipeline}.upload-{int(upload_id)}.parquet"
    )
    return linkage_dir(root, counter_id) / f"date={_day(day)}" / name


def ledger_dir(root: str | ObjectStoragePath, counter_id: int) -> ObjectStoragePath:
    """The call ledger of one Metrika counter: a folder of immutable Parquet parts (``ledger.py``)."""
    return root_path(root) / "metrika" / "ledger" / f"counter={int(counter_id)}"


def lease_dir(root: str | ObjectStoragePath, counter_id: int) -> ObjectStoragePath:
    """The lease files of one Metrika counter (``lease.py``): one writer per counter at a time."""
    return root_path(root) / "metrika" / "locks" / f"counter={int(counter_id)}"


def upload_csv_path(
    root: str | ObjectStoragePath, counter_id: int, day: date | str, pipeline: str, part: int
) -> ObjectStoragePath:
    """The CSV exactly as sent in one upload (pipeline, day, part): written once, never rewritten."""
    return _day_file(
        root, "metrika", "uploads", f"counter={int(counter_id)}", day, f"{pipeline}.part{int(part):04d}.csv"
    )


def dry_run_csv_path(
    root: str | ObjectStoragePath, counter_id: int, day: date | str, pipeline: str, run: str
) -> ObjectStoragePath:
    """The CSV a dry run would have uploaded (kept apart from what was really sent)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run)
    return _day_file(root, "metrika", "dry_runs", f"counter={int(counter_id)}", day, f"{pipeline}.{safe}.csv")


@contextmanager
def atomic_open(path: ObjectStoragePath) -> Iterator[IO[bytes]]:
    """Open ``path`` for an atomic binary write: yields a temporary sibling, which replaces ``path`` on exit.

    On a local disk the final step is a rename (atomic); on object stores it is copy + delete of the
    temporary object, and the final object appears in one PUT. If the block raises, the temporary
    file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        with tmp.open("wb") as fh:
            yield fh
        tmp.move(path)
    except BaseException:
        try:
            if tmp.exists():
                tmp.unlink()
        except OSError:  # pragma: no cover - best effort cleanup
            pass
        raise


def atomic_write(path: ObjectStoragePath, write: Callable[[IO[bytes]], object]) -> ObjectStoragePath:
    """Write ``path`` atomically (:func:`atomic_open`): ``write(fileobj)`` fills the temporary sibling."""
    with atomic_open(path) as fh:
        write(fh)
    return path


def atomic_write_bytes(path: ObjectStoragePath, data: bytes) -> ObjectStoragePath:
    """:func:`atomic_write` for a bytes payload."""
    return atomic_write(path, lambda fh: fh.write(data))


# --------------------------------------------------------------------------------------------------
# The plans ledger: one JSON entry per plans batch (written by the plans import operator and the plans
# status sensor; the sensor must not import an operator module, so both read and write it here).
# --------------------------------------------------------------------------------------------------


def utc_now_iso() -> str:
    """Now in UTC as ISO 8601 to the second (``2026-11-30T06:40:00+00:00``): the ledgers' timestamps."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_plans_ledger_entry(path: ObjectStoragePath) -> dict[str, Any] | None:
    """The plans ledger entry at ``path`` (a dict with ``state``: ``sent`` or ``succeeded``), or None
    (:func:`read_json`: also when unreadable; the batch is then sent again, which is what an entry that
    never existed means too)."""
    return read_json(path)


def write_plans_ledger_entry(path: ObjectStoragePath, entry: dict[str, Any]) -> ObjectStoragePath:
    """Replace the plans ledger entry at ``path`` with ``entry`` (:func:`write_json`)."""
    return write_json(path, entry)


def mark_plans_ledger_succeeded(ledger: str | ObjectStoragePath, import_log_id: int) -> None:
    """Record in the plans ledger entry at ``ledger`` that import ``import_log_id`` succeeded.

    Keeps what the entry already says (file, rows, sha256) and sets ``state`` to ``succeeded``,
    ``import_log_id`` and ``succeeded_at`` (UTC, ISO 8601). Such a batch is never sent again unless forced.
    """
    path = ledger if isinstance(ledger, ObjectStoragePath) else ObjectStoragePath(str(ledger))
    entry = read_plans_ledger_entry(path) or {}
    entry.update(state=LEDGER_SUCCEEDED, import_log_id=int(import_log_id), succeeded_at=utc_now_iso())
    write_plans_ledger_entry(path, entry)
