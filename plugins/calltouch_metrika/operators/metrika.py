"""MetrikaUploadCallsOperator: the extracted calls -> Metrika's calls CSV -> one upload per interval.

Why idempotent by comment: Metrika does not document deduplication of uploads (api-notes §3.4), and
an upload whose response is lost may or may not have been stored. Every upload carries a
deterministic comment naming the pipeline, the site and the day(s); before uploading, the operator
looks for an upload with that comment and reuses it. So a retried task, a re-run day, or a first
attempt whose response was lost never yields a second upload (``force_reupload`` overrides this).

The transform (``transforms.calls``) is pure; this operator streams: it reads the extract task's
Parquet record batch by record batch (:attr:`MetrikaUploadCallsOperator.batch_size` rows), transforms
each batch (duplicate callIds are caught across batches and files), appends its rows to the CSV and
its rejects to the rejects Parquet, each written to a temporary file moved over its final path when
complete; then it uploads the CSV from that file, and logs a reconciled summary: extracted =
uploaded + rejected. Memory: one batch, not the day (``bench/upload_operator.py``).

Steps, one method each (a call ledger can be inserted between them): :meth:`~MetrikaUploadCallsOperator.build_csv`
-> :meth:`~MetrikaUploadCallsOperator.find_existing` (an upload with this comment) ->
:meth:`~MetrikaUploadCallsOperator.upload` -> the XCom returned by ``execute``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from calltouch_metrika import storage
from calltouch_metrika._utils import as_bool
from calltouch_metrika.constants import MAX_COMMENT

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from calltouch_metrika.hooks.metrika import MetrikaHook
    from calltouch_metrika.transforms.calls import CallsCounts, TransformOptions

COMMENT_PREFIX = "calltouch-metrika"


def upload_comment(pipeline: str, site_id: int, date_from: date, date_to: date) -> str:
    """The deterministic upload comment for ``[date_from, date_to)``, at most 255 characters.

    Only Latin letters, digits, spaces, ``-`` and ``_``: Metrika documents the comment as free text
    of "digits, Latin and Cyrillic letters" for basic uploads (api-notes §3.2), so no ``:`` or ``=``.
    E.g. ``calltouch-metrika demo site 10001 2026-11-23``.
    """
    last = date_to - timedelta(days=1)
    days = date_from.isoformat() if last <= date_from else f"{date_from.isoformat()} to {last.isoformat()}"
    comment = f"{COMMENT_PREFIX} {pipeline} site {int(site_id)} {days}"
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"upload comment longer than {MAX_COMMENT} characters: {comment!r}")
    return comment


@dataclass(frozen=True)
class BuiltCsv:
    """What :meth:`MetrikaUploadCallsOperator.build_csv` produced: reconciled counts and the two files."""

    counts: CallsCounts
    csv_path: ObjectStoragePath
    rejects_path: ObjectStoragePath
    csv_bytes: int


class MetrikaUploadCallsOperator(BaseOperator):
    """Build the Metrika calls CSV from the extract task's Parquet and upload it once.

    Returns (XCom) ``{"upload_id", "counter_id", "comment", "extracted", "uploaded", "rejected",
    "rejects_by_reason", "csv_path", "rejects_path", "reused", "dry_run", "status"}``; ``upload_id``
    is None when nothing was uploaded (empty day, every call rejected, dry run).

    :param pipeline: the pipeline name (part of the comment and of the file names).
    :param extract: the extract task's XCom (pass ``extract_task.output``), with ``paths``/``path``,
        ``site_id``, ``date_from``, ``date_to`` (exclusive).
    :param metrika_conn_id: the Metrika connection id. Templated.
    :param counter_id: the Metrika counter.
    :param timezone: the site's time zone (cross-checks ``date`` against ``timestamp``).
    :param identifier: ``ClientId``, ``UserId`` or ``Yclid``; ``identifier_field`` is the call field feeding it.
    :param price_mode: ``none``, ``fixed`` (``price`` per call) or ``orders`` (sum of the call's orders).
    :param currency: ISO 4217 code for ``Price``.
    :param include_tags: put call tag names in ``Tag``.
    :param new_goal_name: the calls goal Metrika creates if the counter has none.
    :param storage_root: path or fsspec URL of the storage root.
    :param dry_run: build and validate the CSV, write it to storage, upload nothing (templated).
    :param force_reupload: upload even if an upload with this comment exists (templated).
    :param linkage_window_days: calls older than this are rejected (Metrika links only 21 days back).
    :param batch_size: rows per Parquet record batch transformed at a time (memory is one batch).
    """

    template_fields: Sequence[str] = (
        "extract",
        "metrika_conn_id",
        "counter_id",
        "dry_run",
        "force_reupload",
        "storage_root",
    )
    ui_color = "#fde9c8"

    def __init__(
        self,
        *,
        pipeline: str,
        extract: Any,
        metrika_conn_id: str = "metrika_default",
        counter_id: int | str,
        timezone: str = "Europe/Moscow",
        identifier: str = "ClientId",
        identifier_field: str = "yaClientId",
        price_mode: str = "none",
        price: float | None = None,
        currency: str = "RUB",
        include_tags: bool = True,
        new_goal_name: str | None = None,
        storage_root: str,
        dry_run: bool | str = False,
        force_reupload: bool | str = False,
        linkage_window_days: int = 21,
        lookup_attempts: int = 4,
        lookup_delay: float = 2.0,
        batch_size: int = 65_536,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.extract = extract
        self.metrika_conn_id = metrika_conn_id
        self.counter_id = counter_id
        self.timezone = timezone
        self.identifier = identifier
        self.identifier_field = identifier_field
        self.price_mode = price_mode
        self.price = price
        self.currency = currency
        self.include_tags = include_tags
        self.new_goal_name = new_goal_name
        self.storage_root = storage_root
        self.dry_run = dry_run
        self.force_reupload = force_reupload
        self.linkage_window_days = linkage_window_days
        self.lookup_attempts = lookup_attempts
        self.lookup_delay = lookup_delay
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of rows, got {batch_size!r}")
        self.batch_size = batch_size

    # -- pieces ---------------------------------------------------------------------------------
    def _extract_info(self) -> tuple[int, date, date, list[str]]:
        x = self.extract
        if not isinstance(x, Mapping):
            raise AirflowException(
                f"'extract' must be the extract task's XCom dict (pass extract_task.output), got {type(x).__name__}"
            )
        try:
            site_id = int(x["site_id"])
            d_from = date.fromisoformat(str(x["date_from"]))
            d_to = date.fromisoformat(str(x["date_to"]))
        except (KeyError, ValueError) as exc:
            raise AirflowException(f"the extract XCom lacks or has a bad {exc}: {dict(x)}") from None
        paths = list(x.get("paths") or [x["path"]])
        return site_id, d_from, d_to, paths

    def _options(self, site_id: int) -> TransformOptions:
        from calltouch_metrika.transforms.calls import TransformOptions

        return TransformOptions(
            identifier=self.identifier,
            identifier_field=self.identifier_field,
            price_mode=self.price_mode,
            price=self.price,
            currency=self.currency,
            include_tags=self.include_tags,
            site_id=site_id,
            site_timezone=self.timezone,
            linkage_window_days=self.linkage_window_days,
        )

    def _batches(self, paths: list[str]) -> Iterator[Any]:
        """The extract's Parquet files, record batch by record batch (at most ``batch_size`` rows)."""
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath

        for p in paths:
            with ObjectStoragePath(p).open("rb") as fh:
                yield from pq.ParquetFile(fh).iter_batches(batch_size=self.batch_size)

    def build_csv(
        self, paths: list[str], site_id: int, csv_path: ObjectStoragePath, rejects_path: ObjectStoragePath
    ) -> BuiltCsv:
        """Stream the extract's Parquet into the CSV and the rejects Parquet (each written atomically).

        :raises AirflowException: the counts do not reconcile (extracted != uploaded + rejected, or the
            rows written differ from the counts).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        from calltouch_metrika.transforms.calls import empty_rejects
        from calltouch_metrika.transforms.calls_stream import CallsCsvStream

        options = self._options(site_id)
        rejects_schema = pa.Table.from_pandas(empty_rejects(), preserve_index=False).schema
        csv_rows = rejects_rows = 0
        with storage.atomic_open(csv_path) as csv_fh, storage.atomic_open(rejects_path) as rejects_fh:
            with (
                pq.ParquetWriter(rejects_fh, rejects_schema) as rejects_writer,
                CallsCsvStream(csv_fh, options, now=datetime.now(UTC)) as stream,
            ):
                for batch in self._batches(paths):
                    result = stream.write(batch)
                    csv_rows += len(result.upload)
                    if len(result.rejects):
                        table = pa.Table.from_pandas(result.rejects, preserve_index=False)
                        rejects_writer.write_table(table.cast(rejects_schema))
                        rejects_rows += len(result.rejects)
            counts = stream.counts
            if (
                counts.extracted != counts.uploaded + counts.rejected
                or counts.uploaded != csv_rows
                or counts.rejected != rejects_rows
            ):
                raise AirflowException(
                    f"counts do not reconcile: extracted {counts.extracted} != uploaded {counts.uploaded} "
                    f"+ rejected {counts.rejected} (CSV rows {csv_rows}, rejects rows {rejects_rows})"
                )
        return BuiltCsv(
            counts=counts, csv_path=csv_path, rejects_path=rejects_path, csv_bytes=stream.bytes_written
        )

    def find_existing(self, hook: MetrikaHook, counter_id: int, comment: str) -> dict[str, Any] | None:
        """The upload already made with ``comment`` (Metrika's ``uploading`` record), or None."""
        return hook.find_calls_uploading(counter_id, comment=comment)

    def upload(
        self, hook: MetrikaHook, counter_id: int, comment: str, csv_path: ObjectStoragePath
    ) -> dict[str, Any]:
        """Upload the CSV file (streamed from storage), or on a lost response find it by its comment.

        Never uploads twice: a lost response is resolved by looking the comment up.
        :raises AirflowException: no response and no upload with ``comment`` after the lookups.
        """
        from calltouch_metrika.exceptions import OutcomeUnknownError
        from calltouch_metrika.transforms.metrika_csv import metrika_client_id_type

        try:
            with csv_path.open("rb") as csv_file:
                return hook.upload_calls(
                    counter_id,
                    csv_file,
                    comment=comment,
                    new_goal_name=self.new_goal_name,
                    client_id_type=metrika_client_id_type(self.identifier),
                )
        except OutcomeUnknownError as exc:
            self.log.warning(
                "The upload's response was lost (%s); looking it up by its comment %r", exc, comment
            )
            for attempt in range(1, self.lookup_attempts + 1):
                try:
                    found = self.find_existing(hook, counter_id, comment)
                except Exception as lookup_exc:  # keep trying: the point is to learn the outcome
                    self.log.warning("Lookup %d failed: %s", attempt, lookup_exc)
                    found = None
                if found:
                    self.log.info("Found the upload: id %s, status %s", found.get("id"), found.get("status"))
                    return found
                if attempt < self.lookup_attempts:
                    time.sleep(self.lookup_delay * attempt)
            raise AirflowException(
                f"The upload to counter {counter_id} got no response and no upload with the comment "
                f"{comment!r} exists after {self.lookup_attempts} lookups: Metrika did not store it. "
                "Retrying this task is safe (it looks the comment up again first)."
            ) from exc

    # -- execute --------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        """Build the CSV and rejects, upload once (or reuse), log the reconciled summary."""
        from calltouch_metrika.hooks.metrika import MetrikaHook

        dry_run = as_bool(self.dry_run, "dry_run")
        force = as_bool(self.force_reupload, "force_reupload")
        counter_id = int(self.counter_id)
        site_id, d_from, d_to, paths = self._extract_info()
        label = storage.day_label(d_from, d_to)
        comment = upload_comment(self.pipeline, site_id, d_from, d_to)
        csv_path = storage.metrika_csv_path(self.storage_root, counter_id, label, self.pipeline)
        rejects_path = storage.rejects_path(self.storage_root, counter_id, label, self.pipeline)

        built = self.build_csv(paths, site_id, csv_path, rejects_path)
        extracted, uploaded, rejected = built.counts.extracted, built.counts.uploaded, built.counts.rejected
        by_reason = dict(built.counts.rejects_by_reason)

        out: dict[str, Any] = {
            "upload_id": None,
            "counter_id": counter_id,
            "comment": comment,
            "extracted": extracted,
            "uploaded": uploaded,
            "rejected": rejected,
            "rejects_by_reason": by_reason,
            "csv_path": str(csv_path),
            "rejects_path": str(rejects_path),
            "reused": False,
            "dry_run": dry_run,
            "status": None,
        }
        action: str
        if uploaded == 0:
            action = (
                "nothing uploaded: no calls that day"
                if extracted == 0
                else "nothing uploaded: every call was rejected (see the rejects dataset)"
            )
        elif dry_run:
            action = "dry run: CSV built and validated, nothing uploaded"
        else:
            hook = MetrikaHook(metrika_conn_id=self.metrika_conn_id)
            existing = None if force else self.find_existing(hook, counter_id, comment)
            if existing:
                out.update(upload_id=int(existing["id"]), reused=True, status=existing.get("status"))
                action = (
                    f"already uploaded as {existing['id']} (status {existing.get('status')}); not uploading "
                    "again (trigger with force_reupload to override)"
                )
            else:
                if force:
                    self.log.warning("force_reupload: uploading even if %r was uploaded before", comment)
                uploading = self.upload(hook, counter_id, comment, csv_path)
                out.update(upload_id=int(uploading["id"]), status=uploading.get("status"))
                action = f"uploaded as {uploading['id']} (status {uploading.get('status')})"

        reasons = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) or "none"
        self.log.info(
            "Upload summary for %s, site %s -> counter %s, %s:\n"
            "  extracted %d = uploaded %d + rejected %d (by reason: %s)\n"
            "  %s\n  upload id: %s; comment: %r\n  CSV: %s\n  rejects: %s",
            self.pipeline,
            site_id,
            counter_id,
            label,
            extracted,
            uploaded,
            rejected,
            reasons,
            action,
            out["upload_id"],
            comment,
            csv_path,
            rejects_path,
        )
        return out
