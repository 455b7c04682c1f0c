"""Where the datasets live: one layout, expressed as :class:`ObjectStoragePath` (any fsspec URL).

Why one module: the extract, upload, requests and plans tasks (and the people reading the files)
must agree on the paths. The layout (docs/design.md "Datasets on storage")::

    {root}/calltouch/calls/site={site_id}/date={YYYY-MM-DD}/calls.parquet
    {root}/calltouch/requests/site={site_id}/date={YYYY-MM-DD}/requests.parquet
    {root}/metrika/calls_csv/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.csv
    {root}/metrika/rejects/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.parquet
    {root}/calltouch/plans_ledger/site={site_id}/{sha256}.json
    {root}/metrika/linkage/counter={counter_id}/date={YYYY-MM-DD}/{pipeline}.upload-{id}.parquet

``root`` is a plain local path (``/data``, ``~/data``, ``data`` relative to the working directory)
or a URL (``file:///data``, ``s3://bucket/prefix``, ``s3://conn_id@bucket/prefix``).
Writes are atomic per file: a temporary sibling is written, then moved over the final name, so a
reader never sees half a file and a re-run simply replaces its own partition.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Literal

from airflow.sdk import ObjectStoragePath

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
    """The ledger entry of one plans batch imported successfully (keyed by the batch's hash)."""
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


def atomic_write(path: ObjectStoragePath, write: Callable[[IO[bytes]], object]) -> ObjectStoragePath:
    """Write ``path`` atomically: ``write(fileobj)`` fills a temporary sibling, which then replaces ``path``.

    On a local disk the final step is a rename (atomic); on object stores it is copy + delete of the
    temporary object, and the final object appears in one PUT. A failed write leaves no temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        with tmp.open("wb") as fh:
            write(fh)
        tmp.move(path)
    except BaseException:
        try:
            if tmp.exists():
                tmp.unlink()
        except OSError:  # pragma: no cover - best effort cleanup
            pass
        raise
    return path


def atomic_write_bytes(path: ObjectStoragePath, data: bytes) -> ObjectStoragePath:
    """:func:`atomic_write` for a bytes payload."""
    return atomic_write(path, lambda fh: fh.write(data))
