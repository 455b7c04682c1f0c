"""The Yandex Metrika offline calls CSV (seed 000): its columns, their types, and the serialiser.

Format written (seed 000; api-notes §3.3): UTF-8, a header row of bare column names, comma separator,
``\\n`` line ends; text values are double-quoted with inner quotes doubled (RFC 4180), so commas,
quotes and line breaks in ``Tag`` or ``URL`` are safe; integers are written as integers (no ``.0``),
``Price`` with a dot and 2 decimals; empty and missing values as nothing (blank text counts as
missing). Uses :func:`pyarrow.csv.write_csv` / :class:`pyarrow.csv.CSVWriter` (perf-notes: ~9x a
row-by-row writer).

Pure: writes only to the binary file object it is given (never opens a path), no network, no
Airflow import. The caller (the upload operator, :mod:`calltouch_metrika.storage`) owns the file.
"""

from __future__ import annotations

import io
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = [
    "IDENTIFIERS",
    "METRIKA_COLUMN_TYPES",
    "MetrikaCsvWriter",
    "blank_to_null",
    "metrika_client_id_type",
    "metrika_csv_bytes",
    "metrika_table",
    "write_metrika_csv",
]

#: identifier column -> Metrika ``client_id_type`` (seed 000)
IDENTIFIERS: dict[str, str] = {"ClientId": "CLIENT_ID", "UserId": "USER_ID", "Yclid": "YCLID"}

#: Every Metrika calls CSV column (seed 000 order, identifier first) and the Arrow type written.
METRIKA_COLUMN_TYPES: dict[str, pa.DataType] = {
    "UserId": pa.string(),
    "ClientId": pa.string(),
    "Yclid": pa.string(),
    "DateTime": pa.int64(),
    "StaticCall": pa.int64(),
    "Price": pa.decimal128(20, 2),
    "Currency": pa.string(),
    "PhoneNumber": pa.string(),
    "TalkDuration": pa.int64(),
    "HoldDuration": pa.int64(),
    "CallMissed": pa.int64(),
    "Tag": pa.string(),
    "FirstTimeCaller": pa.int64(),
    "URL": pa.string(),
    "CallTrackerURL": pa.string(),
}

_WRITE_OPTIONS = pacsv.WriteOptions(
    include_header=True, delimiter=",", eol="\n", quoting_style="needed", quoting_header="none"
)


def metrika_client_id_type(identifier: str) -> str:
    """Metrika's ``client_id_type`` for an identifier column: ``ClientId`` -> ``CLIENT_ID`` etc.

    :raises ValueError: not one of :data:`IDENTIFIERS`.
    """
    try:
        return IDENTIFIERS[identifier]
    except KeyError:
        raise ValueError(f"identifier must be one of {sorted(IDENTIFIERS)}, got {identifier!r}") from None


def blank_to_null(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Text trimmed of surrounding whitespace; empty (or all-blank) values become null."""
    trimmed = pc.utf8_trim_whitespace(array)
    return pc.if_else(pc.equal(pc.utf8_length(trimmed), 0), pa.scalar(None, pa.string()), trimmed)


class _CountingSink:
    """File-like wrapper that forwards writes to ``target`` and counts the bytes."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.target.write(view)
        self.written += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self.target.flush()

    def tell(self) -> int:
        return self.written

    def close(self) -> None:  # the caller owns the target
        self.closed = True


def metrika_table(frame: pd.DataFrame) -> pa.Table:
    """A Metrika-column frame -> Arrow table with the CSV types (ints stay ints, no ``.0``).

    :raises ValueError: unknown columns, not exactly one identifier plus ``DateTime``, or values
        that do not fit a column's type.
    """
    unknown = [c for c in frame.columns if c not in METRIKA_COLUMN_TYPES]
    if unknown:
        raise ValueError(f"not Metrika calls CSV columns: {unknown}; allowed: {list(METRIKA_COLUMN_TYPES)}")
    identifiers = [c for c in frame.columns if c in IDENTIFIERS]
    if len(identifiers) != 1 or "DateTime" not in frame.columns:
        raise ValueError(
            f"the CSV needs exactly one identifier column of {list(IDENTIFIERS)} and DateTime, "
            f"got columns {list(frame.columns)}"
        )
    arrays = []
    for name in frame.columns:
        target = METRIKA_COLUMN_TYPES[name]
        series = frame[name]
        try:
            array = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(
                series.astype(object).where(series.notna(), None).astype(str).where(series.notna(), None)
            )
        if not array.type.equals(target):
            if pa.types.is_string(target) and not (
                pa.types.is_string(array.type)
                or pa.types.is_large_string(array.type)
                or pa.types.is_null(array.type)
            ):
                raise ValueError(f"column {name} must hold text, got {array.type}")
            try:
                array = array.cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"column {name} cannot be written as {target}: {exc}") from exc
        if pa.types.is_string(target):
            array = blank_to_null(array) if len(array) else array
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=list(frame.columns))


def write_metrika_csv(frame: pd.DataFrame, sink: IO[bytes]) -> int:
    """Write Metrika calls CSV rows (``CallsTransformResult.upload``) and return the bytes written.

    The frame's index (``callId``) is not written. See the module docstring for the format.

    :param frame: columns from :data:`METRIKA_COLUMN_TYPES`, exactly one identifier and ``DateTime``.
    :param sink: a binary file-like object (written from its current position, left open).
    :raises ValueError: unknown columns, or values that do not fit a column's type.
    :raises TypeError: ``sink`` is a path (open it yourself: a transform never opens files).
    """
    _require_file(sink)
    table = metrika_table(frame)
    counting = _CountingSink(sink)
    pacsv.write_csv(table, pa.PythonFile(counting, mode="w"), write_options=_WRITE_OPTIONS)
    return counting.written


def metrika_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The CSV of :func:`write_metrika_csv` as bytes (handy for small uploads and tests)."""
    buffer = io.BytesIO()
    write_metrika_csv(frame, buffer)
    return buffer.getvalue()


def _require_file(sink: object) -> None:
    if not callable(getattr(sink, "write", None)):
        raise TypeError(f"sink must be a binary file object with write(), got {type(sink).__name__}")


class MetrikaCsvWriter:
    """An incremental calls CSV: the header once (even with no rows), then each batch of rows.

    ``MetrikaCsvWriter(sink, columns)``; :meth:`write` a frame per batch; :meth:`close` (or use it as
    a context manager). The bytes equal :func:`write_metrika_csv` on the concatenated frames.

    :param sink: a binary file object (left open).
    :param columns: the CSV columns in order (e.g. :func:`~calltouch_metrika.transforms.calls.upload_columns`).
    """

    def __init__(self, sink: IO[bytes], columns: list[str]) -> None:
        _require_file(sink)
        self.schema = pa.schema([(name, METRIKA_COLUMN_TYPES[name]) for name in columns])
        self._counting = _CountingSink(sink)
        self._writer = pacsv.CSVWriter(
            pa.PythonFile(self._counting, mode="w"), self.schema, write_options=_WRITE_OPTIONS
        )

    @property
    def bytes_written(self) -> int:
        """Bytes handed to the sink so far."""
        return self._counting.written

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows of ``frame`` (columns exactly those given to the constructor)."""
        self._writer.write_table(metrika_table(frame).cast(self.schema))

    def close(self) -> None:
        """Flush the CSV writer (the sink stays open)."""
        self._writer.close()

    def __enter__(self) -> MetrikaCsvWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
