"""MetrikaUploadCallsOperator: the extracted calls -> Metrika's calls CSV -> one upload per interval.

Why idempotent by comment: Metrika does not document deduplication of uploads (api-notes §3.4), and
an upload whose response is lost may or may not have been stored. Every upload carries a
deterministic comment naming the pipeline, the site and the day(s); before uploading, the operator
looks for an upload with that comment and reuses it. So a retried task, a re-run day, or a first
attempt whose response was lost never yields a second upload (``force_reupload`` overrides this).

The transform (``transforms.calls``) is pure; this operator reads the Parquet written by the extract
task, runs it, writes the CSV and the rejects next to each other on storage, uploads through the hook
and logs a reconciled summary: extracted = uploaded + rejected.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from calltouch_metrika import storage
from calltouch_metrika._utils import as_bool
from calltouch_metrika.constants import MAX_COMMENT

if TYPE_CHECKING:
    from airflow.sdk import Context

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


def _count(counts: Any, key: str) -> Any:
    return counts[key] if isinstance(counts, Mapping) else getattr(counts, key)


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

    def _read(self, paths: list[str]) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath

        tables = []
        for p in paths:
            with ObjectStoragePath(p).open("rb") as fh:
                tables.append(pq.read_table(io.BytesIO(fh.read())))
        if len(tables) == 1:
            return tables[0]
        return pa.concat_tables(tables, promote_options="default")

    def _transform(self, table: Any, site_id: int) -> Any:
        from calltouch_metrika.transforms.calls import TransformOptions, calls_to_metrika

        options = TransformOptions(
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
        return calls_to_metrika(table, options, now=datetime.now(UTC))

    def _write_outputs(self, result: Any, csv_path: Any, rejects_path: Any) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from calltouch_metrika.transforms.calls import write_metrika_csv

        buf = io.BytesIO()
        write_metrika_csv(result.upload, buf)
        data = buf.getvalue()
        storage.atomic_write_bytes(csv_path, data)
        rbuf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(result.rejects, preserve_index=False), rbuf)
        storage.atomic_write_bytes(rejects_path, rbuf.getvalue())
        return data

    def _find(self, hook: Any, counter_id: int, comment: str) -> dict[str, Any] | None:
        return hook.find_calls_uploading(counter_id, comment=comment)

    def _upload_once(self, hook: Any, counter_id: int, comment: str, data: bytes) -> dict[str, Any]:
        """Upload, or on a lost response find the upload by its comment (never upload twice)."""
        from calltouch_metrika.exceptions import OutcomeUnknownError
        from calltouch_metrika.transforms.calls import metrika_client_id_type

        try:
            return hook.upload_calls(
                counter_id,
                data,
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
                    found = self._find(hook, counter_id, comment)
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
        """Transform, write the CSV and rejects, upload once (or reuse), log the reconciled summary."""
        from calltouch_metrika.hooks.metrika import MetrikaHook

        dry_run = as_bool(self.dry_run, "dry_run")
        force = as_bool(self.force_reupload, "force_reupload")
        counter_id = int(self.counter_id)
        site_id, d_from, d_to, paths = self._extract_info()
        label = storage.day_label(d_from, d_to)
        comment = upload_comment(self.pipeline, site_id, d_from, d_to)
        csv_path = storage.metrika_csv_path(self.storage_root, counter_id, label, self.pipeline)
        rejects_path = storage.rejects_path(self.storage_root, counter_id, label, self.pipeline)

        result = self._transform(self._read(paths), site_id)
        counts = result.counts
        extracted = int(_count(counts, "extracted"))
        uploaded = int(_count(counts, "uploaded"))
        rejected = int(_count(counts, "rejected"))
        by_reason = {str(k): int(v) for k, v in dict(_count(counts, "rejects_by_reason")).items()}
        if (
            extracted != uploaded + rejected
            or uploaded != len(result.upload)
            or rejected != len(result.rejects)
        ):
            raise AirflowException(
                f"counts do not reconcile: extracted {extracted} != uploaded {uploaded} + rejected {rejected} "
                f"(CSV rows {len(result.upload)}, rejects rows {len(result.rejects)})"
            )
        data = self._write_outputs(result, csv_path, rejects_path)

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
            existing = None if force else self._find(hook, counter_id, comment)
            if existing:
                out.update(upload_id=int(existing["id"]), reused=True, status=existing.get("status"))
                action = (
                    f"already uploaded as {existing['id']} (status {existing.get('status')}); not uploading "
                    "again (trigger with force_reupload to override)"
                )
            else:
                if force:
                    self.log.warning("force_reupload: uploading even if %r was uploaded before", comment)
                uploading = self._upload_once(hook, counter_id, comment, data)
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
