"""Streaming the calls transform: batches (e.g. Parquet record batches) -> one Metrika CSV.

Bounded memory: one batch plus 8 bytes per distinct ``callId`` seen (duplicates are detected across
batches). The output equals :func:`~calltouch_metrika.transforms.calls.calls_to_metrika` +
:func:`~calltouch_metrika.transforms.metrika_csv.write_metrika_csv` on the whole input.

Pure: writes only to the binary file object it is given, no network, no Airflow import.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa

from calltouch_metrika.transforms.calls import calls_to_metrika
from calltouch_metrika.transforms.calls_model import (
    CallsCounts,
    CallsTransformResult,
    TransformOptions,
    empty_rejects,
    upload_columns,
)
from calltouch_metrika.transforms.metrika_csv import MetrikaCsvWriter

__all__ = ["CallsCsvStream", "StreamedCallsResult", "stream_calls_to_metrika_csv"]


@dataclass(frozen=True)
class StreamedCallsResult:
    """What :func:`stream_calls_to_metrika_csv` returns: counts, all rejects, CSV bytes written."""

    counts: CallsCounts
    rejects: pd.DataFrame
    bytes_written: int
    client_id_type: str


class CallsCsvStream:
    """Calls -> one Metrika CSV, batch by batch (e.g. Parquet record batches), with bounded memory.

    Each :meth:`write` runs :func:`calls_to_metrika` on one batch, appends its upload rows to the CSV
    and returns that batch's result (its ``rejects`` are for the caller to store); a ``callId`` seen
    in an earlier batch (uploaded or rejected) is rejected as ``duplicate_call``, so the output is
    the same as one :func:`calls_to_metrika` + :func:`write_metrika_csv` on the whole input. Memory:
    one batch plus 8 bytes per distinct ``callId`` seen. The header is written even with no rows.

    :param sink: a binary file object (left open; a transform never opens paths).
    :param options: the pipeline's :class:`TransformOptions`.
    :param now: the upload time (timezone-aware).
    """

    def __init__(self, sink: IO[bytes], options: TransformOptions, *, now: datetime) -> None:
        self.options = options
        self.now = now
        self.counts = CallsCounts(0, 0, 0, {})
        self._seen = np.empty(0, dtype=np.int64)  # sorted distinct callIds of earlier batches
        self._writer = MetrikaCsvWriter(sink, upload_columns(options))

    @property
    def bytes_written(self) -> int:
        """CSV bytes written so far."""
        return self._writer.bytes_written

    def write(self, batch: pa.Table | pa.RecordBatch | pd.DataFrame) -> CallsTransformResult:
        """Transform one batch, append its rows to the CSV, return its result (counts reconciled)."""
        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        excluded = self._seen if len(self._seen) else None
        result = calls_to_metrika(batch, self.options, now=self.now, exclude_call_ids=excluded)
        self._writer.write(result.upload)
        rejected_ids = result.rejects["callId"].dropna().to_numpy(dtype=np.int64)
        batch_ids = np.concatenate([result.upload.index.to_numpy(dtype=np.int64), rejected_ids])
        self._remember(batch_ids)
        self.counts = self.counts + result.counts
        return result

    def _remember(self, ids: np.ndarray) -> None:
        """Merge ``ids`` into the sorted distinct ``_seen`` (an O(n) insert, not a re-sort or hash of all)."""
        new = np.unique(ids)
        seen = self._seen
        if len(seen) and len(new):
            pos = np.searchsorted(seen, new)
            present = seen[np.minimum(pos, len(seen) - 1)] == new
            new, pos = new[~present], pos[~present]
            self._seen = np.insert(seen, pos, new)
        elif len(new):
            self._seen = new

    def close(self) -> None:
        """Finish the CSV (the sink stays open)."""
        self._writer.close()

    def __enter__(self) -> CallsCsvStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_calls_to_metrika_csv(
    batches: Iterable[pa.Table | pa.RecordBatch | pd.DataFrame],
    options: TransformOptions,
    *,
    now: datetime,
    sink: IO[bytes],
) -> StreamedCallsResult:
    """:class:`CallsCsvStream` over ``batches``, keeping every batch's rejects in one frame.

    Same rules and output bytes as :func:`calls_to_metrika` + :func:`write_metrika_csv` on the
    concatenated input. ``sink`` is a binary file object (a transform never opens paths).
    """
    rejects: list[pd.DataFrame] = []
    with CallsCsvStream(sink, options, now=now) as stream:
        for batch in batches:
            result = stream.write(batch)
            if len(result.rejects):
                rejects.append(result.rejects)
    rejects_frame = pd.concat(rejects, ignore_index=True) if rejects else empty_rejects()
    return StreamedCallsResult(
        counts=stream.counts,
        rejects=rejects_frame,
        bytes_written=stream.bytes_written,
        client_id_type=options.client_id_type,
    )
