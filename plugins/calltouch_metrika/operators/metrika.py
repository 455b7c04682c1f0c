"""MetrikaUploadCallsOperator: the extracted calls -> Metrika's calls CSV -> only the calls not sent yet.

Why a call ledger: Metrika does not document deduplication of repeated calls (api-notes §3.4). The unit
of correctness is the call: every call sent to a counter is recorded in that counter's ledger
(``ledger.CallLedger``), and an upload holds exactly the day's uploadable calls that are not in it,
whichever pipeline sent them. The step "compute what is new -> upload -> record" runs under the
counter's lease (``lease.CounterLease``), so two runs of the same day, two pipelines on one counter or
a retry overlapping a late run never send a call twice. Each upload carries a deterministic comment per
(pipeline, day, part); a lost response is resolved by looking that comment up
(``exactly_once.CounterSender``).

Per run: the linkage threshold is read once (``calls_visit_join_threshold``; calls before it are
rejected as ``before_join_threshold``; no answer -> the 21-day rule, said in the log). The extract
task hands over the run's day (shifted by ``settle_days``) and its lookback days; each day with calls
not in the ledger gets one upload. The CSV of each upload is stored under its (day, pipeline, part)
and never rewritten; a dry run writes under ``metrika/dry_runs/`` and says "would upload".

Streaming (memory is one batch, ``bench/upload_operator.py``): each day's Parquet is read record batch
by record batch (:attr:`MetrikaUploadCallsOperator.batch_size` rows); calls already in the ledger are
dropped from the batch (counted as "already sent"), the rest is transformed (duplicates caught across
batches and files), its rows appended to a local temporary CSV and its rejects to the rejects Parquet
(written atomically). A CSV with rows is then published once to its part path and uploaded from there.
The summary reconciles: extracted = uploaded + already sent + rejected.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from calltouch_metrika import storage
from calltouch_metrika._utils import as_bool
from calltouch_metrika.constants import MAX_COMMENT

if TYPE_CHECKING:
    from airflow.sdk import Context

    from calltouch_metrika.exactly_once import CounterSender, JoinThreshold
    from calltouch_metrika.ledger import CallLedger
    from calltouch_metrika.transforms.calls import CallsCounts, TransformOptions

COMMENT_PREFIX = "calltouch-metrika"
_DATE_IN_PATH = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


def upload_comment(pipeline: str, site_id: int, date_from: date, date_to: date) -> str:
    """The comment of uploads made before the call ledger (one per pipeline and interval).

    Still used to find such uploads when upgrading (``exactly_once.CounterSender.import_legacy``;
    ``ledger.legacy_comment`` for one day). Only Latin letters, digits, spaces, ``-`` and ``_``
    (api-notes §3.2). E.g. ``calltouch-metrika demo site 10001 2026-11-23``.
    """
    last = date_to - timedelta(days=1)
    days = date_from.isoformat() if last <= date_from else f"{date_from.isoformat()} to {last.isoformat()}"
    comment = f"{COMMENT_PREFIX} {pipeline} site {int(site_id)} {days}"
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"upload comment longer than {MAX_COMMENT} characters: {comment!r}")
    return comment


@dataclass
class DayBuild:
    """What :meth:`MetrikaUploadCallsOperator.build_day` produced for one day."""

    counts: CallsCounts
    already_sent: int
    call_ids: list[int] = field(default_factory=list)
    csv_bytes: int = 0


@dataclass
class _Run:
    site_id: int
    counter_id: int
    now: datetime
    threshold: JoinThreshold
    force: bool
    dry_run: bool
    main_days: set[date]
    run_id: str
    ledger: CallLedger
    sender: CounterSender | None = None
    uploadings: list[dict[str, Any]] = field(default_factory=list)


class MetrikaUploadCallsOperator(BaseOperator):
    """Upload the calls of the run's days that the counter's ledger does not hold yet.

    Returns (XCom) ``{"upload_id", "upload_ids", "counter_id", "comment", "extracted", "uploaded",
    "already_sent", "would_upload", "rejected", "rejects_by_reason", "days", "csv_path", "csv_paths",
    "rejects_path", "reused", "dry_run", "forced", "status", "join_threshold", "join_threshold_source"}``.
    ``upload_id`` is the newest upload of this run, else (nothing new) the newest upload of the run's
    own day in the ledger (``reused`` true), else None (the sensor then skips). ``uploaded`` counts the
    calls sent now; ``days`` has the same counts per day.

    :param pipeline: the pipeline name (part of the comment and of the file names).
    :param extract: the extract task's XCom (pass ``extract_task.output``), with ``paths``/``path``,
        ``site_id``, ``date_from``, ``date_to`` (exclusive), and ``days``/``main_days`` when it
        extracted lookback days.
    :param metrika_conn_id: the Metrika connection id. Templated.
    :param counter_id: the Metrika counter.
    :param timezone: the site's time zone (cross-checks ``date`` against ``timestamp``).
    :param identifier: ``ClientId``, ``UserId`` or ``Yclid``; ``identifier_field`` is the call field feeding it.
    :param price_mode: ``none``, ``fixed`` (``price`` per call) or ``orders`` (sum of the call's orders).
    :param currency: ISO 4217 code for ``Price``.
    :param include_tags: put call tag names in ``Tag``.
    :param new_goal_name: the calls goal Metrika creates if the counter has none.
    :param storage_root: path or fsspec URL of the storage root (ledger, lease, CSVs).
    :param dry_run: build and validate the CSV, write it under ``metrika/dry_runs``, upload nothing (templated).
    :param force_reupload: re-send the run's own day's calls even if the ledger holds them, recorded
        as forced (templated). Metrika's deduplication of repeated calls is undocumented (api-notes §3.4).
    :param linkage_window_days: calls older than this are rejected (Metrika links only 21 days back).
    :param batch_size: rows per Parquet record batch transformed at a time (memory is one batch).
    :param lease_ttl: seconds the counter's lease lives without renewal (a crashed run blocks at most this).
    :param lease_wait: seconds to wait for a counter another run is uploading to.
    :param compact_after_files: merge the ledger's files into one when it has more (keeps reads fast).
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
        lease_ttl: float = 120.0,
        lease_wait: float = 1800.0,
        compact_after_files: int = 400,
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
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_wait
        self.compact_after_files = compact_after_files

    # -- pieces ---------------------------------------------------------------------------------
    def _extract_info(self) -> tuple[int, list[tuple[date, list[str]]], set[date]]:
        """``(site_id, [(day, its Parquet paths)] oldest first, the run's own days)`` from the extract XCom."""
        x = self.extract
        if not isinstance(x, Mapping):
            raise AirflowException(
                f"'extract' must be the extract task's XCom dict (pass extract_task.output), got {type(x).__name__}"
            )
        try:
            site_id = int(x["site_id"])
            d_from = date.fromisoformat(str(x["date_from"]))
            d_to = date.fromisoformat(str(x["date_to"]))
            paths = [str(p) for p in (x.get("paths") or [x["path"]])]
            days = [date.fromisoformat(str(d)) for d in (x.get("days") or [])]
            main = {date.fromisoformat(str(d)) for d in (x.get("main_days") or [])}
        except (KeyError, ValueError) as exc:
            raise AirflowException(f"the extract XCom lacks or has a bad {exc}: {dict(x)}") from None
        by_day: dict[date, list[str]] = {}
        if len(days) == len(paths):
            pairs = zip(days, paths, strict=True)
        elif (d_to - d_from).days == 1:
            pairs = ((d_from, p) for p in paths)  # one day in several files
        else:
            pairs = ((self._day_of(p), p) for p in paths)
        for d, p in pairs:
            by_day.setdefault(d, []).append(p)
        ordered = sorted(by_day.items())
        return site_id, ordered, main or set(by_day)

    @staticmethod
    def _day_of(path: str) -> date:
        m = _DATE_IN_PATH.search(path)
        if not m:
            raise AirflowException(
                f"cannot tell the local day of the extract file {path} (no date=YYYY-MM-DD)"
            )
        return date.fromisoformat(m.group(1))

    def _options(self, site_id: int, threshold: datetime | None = None) -> TransformOptions:
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
            join_threshold=threshold,
        )

    def _batches(self, paths: list[str]) -> Iterator[Any]:
        """The extract's Parquet files, record batch by record batch (at most ``batch_size`` rows)."""
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath

        for p in paths:
            with ObjectStoragePath(p).open("rb") as fh:
                yield from pq.ParquetFile(fh).iter_batches(batch_size=self.batch_size)

    def build_day(
        self,
        paths: list[str],
        options: TransformOptions,
        *,
        now: datetime,
        held: Any,
        csv_fh: IO[bytes],
        rejects_path: Any,
    ) -> DayBuild:
        """Stream one day's Parquet into ``csv_fh`` (calls not in ``held``, a collection of callIds) and
        the rejects Parquet (atomic).

        :raises AirflowException: the counts do not reconcile.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from calltouch_metrika.transforms.calls import empty_rejects
        from calltouch_metrika.transforms.calls_stream import CallsCsvStream

        held_array = pa.array(np.asarray(held, dtype=np.int64)) if len(held) else None
        rejects_schema = pa.Table.from_pandas(empty_rejects(), preserve_index=False).schema
        already = csv_rows = rejects_rows = 0
        ids: list[int] = []
        with storage.atomic_open(rejects_path) as rejects_fh:
            with (
                pq.ParquetWriter(rejects_fh, rejects_schema) as rejects_writer,
                CallsCsvStream(csv_fh, options, now=now) as stream,
            ):
                for batch in self._batches(paths):
                    if held_array is not None and "callId" in batch.schema.names:
                        ids_col = pc.cast(batch.column("callId"), pa.int64(), safe=False)
                        sent = pc.fill_null(pc.is_in(ids_col, value_set=held_array), False)
                        n_sent = pc.sum(sent).as_py() or 0
                        if n_sent:
                            already += n_sent
                            batch = batch.filter(pc.invert(sent))
                    result = stream.write(batch)
                    csv_rows += len(result.upload)
                    ids.extend(result.upload.index.to_numpy(dtype=np.int64).tolist())
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
        return DayBuild(counts=counts, already_sent=already, call_ids=ids, csv_bytes=stream.bytes_written)

    # -- execute --------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        """Each day: build what the ledger lacks, upload it under the counter's lease; log the summary."""
        from calltouch_metrika.exactly_once import read_join_threshold
        from calltouch_metrika.hooks.metrika import MetrikaHook
        from calltouch_metrika.ledger import CallLedger

        dry_run = as_bool(self.dry_run, "dry_run")
        force = as_bool(self.force_reupload, "force_reupload")
        counter_id = int(self.counter_id)
        site_id, day_paths, main_days = self._extract_info()
        now = datetime.now(UTC)
        # a short retry budget: an unanswered threshold falls back to the 21-day rule
        probe = MetrikaHook(metrika_conn_id=self.metrika_conn_id, max_attempts=2)
        threshold = read_join_threshold(probe, counter_id, now=now, window_days=self.linkage_window_days)
        (self.log.warning if threshold.source == "fallback" else self.log.info)("%s", threshold.note)
        run = _Run(
            site_id=site_id,
            counter_id=counter_id,
            now=now,
            threshold=threshold,
            force=force,
            dry_run=dry_run,
            main_days=main_days,
            run_id=str(context.get("run_id") or "manual") if isinstance(context, Mapping) else "manual",
            ledger=CallLedger(self.storage_root, counter_id),
        )
        if dry_run:  # reads the ledger, takes no lease, writes nothing but its own files
            run.ledger.refresh()
            days = [self._day(run, d, paths) for d, paths in day_paths]
            return self._summary(run, days)

        from calltouch_metrika.exactly_once import CounterSender
        from calltouch_metrika.lease import CounterLease, default_holder

        ti = context.get("ti") if isinstance(context, Mapping) else None
        holder = default_holder(with_task=False) + (f" {ti.dag_id}/{ti.run_id}/{ti.task_id}" if ti else "")
        with CounterLease(
            self.storage_root, counter_id, ttl=self.lease_ttl, wait=self.lease_wait, holder=holder
        ) as lease:
            if lease.waited >= 1:
                self.log.info(
                    "Waited %.1f s for counter %s (another run was uploading)", lease.waited, counter_id
                )
            run.sender = CounterSender(
                hook=MetrikaHook(metrika_conn_id=self.metrika_conn_id),
                ledger=run.ledger,
                lease=lease,
                site_id=site_id,
                pipeline=self.pipeline,
                lookup_attempts=self.lookup_attempts,
                lookup_delay=self.lookup_delay,
                logger=self.log,
            )
            run.uploadings = run.sender.reconcile()
            days = [self._day(run, d, paths) for d, paths in day_paths]
            if len(run.ledger.files()) > self.compact_after_files:
                merged = run.ledger.compact()
                self.log.info("Compacted counter %s's ledger: %d files merged into one", counter_id, merged)
        return self._summary(run, days)

    def _day(self, run: _Run, day: date, paths: list[str]) -> dict[str, Any]:
        """One day: subtract the ledger, build the CSV and rejects, upload (or would); the day's counts."""
        from calltouch_metrika.exactly_once import FORCE_WARNING
        from calltouch_metrika.lease import create_exclusive

        forced = run.force and day in run.main_days
        if run.sender is not None and not run.force:
            self._import_legacy(run, day, paths)
        held = run.ledger.held_call_id_array(run.site_id)
        rejects_path = storage.rejects_path(self.storage_root, run.counter_id, day, self.pipeline)
        out: dict[str, Any] = {
            "day": day.isoformat(),
            "uploaded": 0,
            "would_upload": 0,
            "rejects_path": str(rejects_path),
            "upload_id": None,
            "status": None,
            "comment": None,
            "csv_path": None,
            "forced": forced,
        }
        with tempfile.TemporaryFile(prefix="calltouch-metrika-", suffix=".csv") as spool:
            built = self.build_day(
                paths,
                self._options(run.site_id, run.threshold.at),
                now=run.now,
                held=held[:0] if forced else held,
                csv_fh=spool,
                rejects_path=rejects_path,
            )
            counts = built.counts
            out.update(
                extracted=counts.extracted + built.already_sent,
                already_sent=built.already_sent,
                rejected=counts.rejected,
                rejects_by_reason=dict(counts.rejects_by_reason),
            )
            if forced:
                import numpy as np

                again = int(np.isin(np.asarray(built.call_ids, dtype=np.int64), held).sum())
                if again:
                    self.log.warning("%s", FORCE_WARNING.format(n=again, day=day))
            if not built.call_ids:
                return out
            spool.seek(0)
            if run.dry_run:
                csv_path = storage.dry_run_csv_path(
                    self.storage_root, run.counter_id, day, self.pipeline, run.run_id
                )
                with storage.atomic_open(csv_path) as fh:
                    shutil.copyfileobj(spool, fh, 1 << 20)
                out.update(would_upload=len(built.call_ids), csv_path=str(csv_path))
                return out
            sender = run.sender
            assert sender is not None
            key, comment = sender.next_key(day)
            csv_path = storage.upload_csv_path(
                self.storage_root, run.counter_id, day, self.pipeline, key.part
            )
            if not create_exclusive(csv_path, spool):
                raise AirflowException(f"the stored CSV of a new upload part already exists: {csv_path}")
        sent = sender.send(
            key, comment, built.call_ids, lambda c: self._upload(sender, run, csv_path, c), forced=forced
        )
        out.update(
            uploaded=len(built.call_ids),
            upload_id=sent.upload_id,
            status=sent.status,
            comment=comment,
            csv_path=str(csv_path),
        )
        return out

    def _upload(self, sender: CounterSender, run: _Run, csv_path: Any, comment: str) -> Mapping[str, Any]:
        """Upload the stored CSV of a part (streamed from storage) under ``comment``."""
        from calltouch_metrika.transforms.metrika_csv import metrika_client_id_type

        with csv_path.open("rb") as csv_file:
            return sender.hook.upload_calls(
                run.counter_id,
                csv_file,
                comment=comment,
                new_goal_name=self.new_goal_name,
                client_id_type=metrika_client_id_type(self.identifier),
            )

    def _import_legacy(self, run: _Run, day: date, paths: list[str]) -> None:
        """Upgrade: a pre-ledger upload of ``day`` goes into the ledger (its stored CSV names the calls)."""
        from calltouch_metrika.ledger import legacy_comment

        sender = run.sender
        assert sender is not None
        if run.ledger.has_day(self.pipeline, day):
            return
        if not any(
            u.get("comment") == legacy_comment(self.pipeline, run.site_id, day) for u in run.uploadings
        ):
            return
        fallback: list[int] = []
        legacy_csv = storage.metrika_csv_path(self.storage_root, run.counter_id, day, self.pipeline)
        if not legacy_csv.exists():  # no stored CSV: the day's uploadable calls now stand for it
            with tempfile.TemporaryFile() as scratch, tempfile.TemporaryDirectory() as tmpdir:
                from airflow.sdk import ObjectStoragePath

                built = self.build_day(
                    paths,
                    self._options(run.site_id, run.threshold.at),
                    now=run.now,
                    held=set(),
                    csv_fh=scratch,
                    rejects_path=ObjectStoragePath(f"file://{tmpdir}/rejects.parquet"),
                )
                fallback = built.call_ids
        sender.import_legacy(day, run.uploadings, csv_path=legacy_csv, fallback_ids=fallback)

    def _summary(self, run: _Run, days: list[dict[str, Any]]) -> dict[str, Any]:
        keys = ("extracted", "uploaded", "already_sent", "rejected", "would_upload")
        total = {k: sum(d[k] for d in days) for k in keys}
        by_reason: dict[str, int] = {}
        for d in days:
            for k, v in d["rejects_by_reason"].items():
                by_reason[k] = by_reason.get(k, 0) + v
        if total["extracted"] != (
            total["uploaded"] + total["would_upload"] + total["already_sent"] + total["rejected"]
        ):
            raise AirflowException(f"counts do not reconcile: {total}")
        uploads = [d for d in days if d["upload_id"] is not None]
        upload_id = uploads[-1]["upload_id"] if uploads else None
        status = uploads[-1]["status"] if uploads else None
        reused = False
        reused_comment = None
        if upload_id is None and not run.dry_run:
            own = [
                st
                for st in run.ledger.parts().values()
                if st.key.pipeline == self.pipeline
                and st.key.day in run.main_days
                and st.upload_id is not None
            ]
            if own:
                latest = max(own, key=lambda st: st.key.part)
                upload_id, status, reused, reused_comment = (
                    latest.upload_id,
                    latest.status,
                    True,
                    latest.comment,
                )
        lines = []
        for d in days:
            if run.dry_run:
                act = f"would upload {d['would_upload']}" if d["would_upload"] else "would upload nothing new"
            elif d["upload_id"] is not None:
                act = f"uploaded {d['uploaded']} as {d['upload_id']} ({d['comment']!r})"
                if d["forced"]:
                    act += " [forced re-send]"
            elif d["extracted"] == 0:
                act = "no calls that day"
            else:
                act = "nothing new to upload"
            kind = "day" if date.fromisoformat(d["day"]) in run.main_days else "lookback"
            lines.append(
                f"  {d['day']} ({kind}): extracted {d['extracted']} = uploaded {d['uploaded'] + d['would_upload']} "
                f"+ already sent {d['already_sent']} + rejected {d['rejected']}; {act}"
            )
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) or "none"
        label = (
            storage.day_label(
                date.fromisoformat(days[0]["day"]), date.fromisoformat(days[-1]["day"]) + timedelta(days=1)
            )
            if days
            else "no days"
        )
        self.log.info(
            "Upload summary for %s, site %s -> counter %s, %s%s:\n"
            "  extracted %d = %s %d + already sent %d + rejected %d (by reason: %s)\n%s\n"
            "  %s\n  uploads this run: %s; ledger: %s",
            self.pipeline,
            run.site_id,
            run.counter_id,
            label,
            " (DRY RUN: nothing uploaded)" if run.dry_run else "",
            total["extracted"],
            "would upload" if run.dry_run else "uploaded",
            total["would_upload"] if run.dry_run else total["uploaded"],
            total["already_sent"],
            total["rejected"],
            reasons,
            "\n".join(lines),
            run.threshold.note,
            [d["upload_id"] for d in uploads] or "none",
            run.ledger.dir,
        )
        return {
            "upload_id": upload_id,
            "upload_ids": [d["upload_id"] for d in uploads],
            "counter_id": run.counter_id,
            "comment": uploads[-1]["comment"] if uploads else reused_comment,
            "extracted": total["extracted"],
            "uploaded": total["uploaded"],
            "would_upload": total["would_upload"],
            "already_sent": total["already_sent"],
            "rejected": total["rejected"],
            "rejects_by_reason": dict(sorted(by_reason.items())),
            "days": days,
            "csv_path": next((d["csv_path"] for d in reversed(days) if d["csv_path"]), None),
            "csv_paths": [d["csv_path"] for d in days if d["csv_path"]],
            "rejects_path": days[-1]["rejects_path"] if days else None,
            "reused": reused,
            "dry_run": run.dry_run,
            "forced": run.force,
            "status": status,
            "join_threshold": run.threshold.at.isoformat(),
            "join_threshold_source": run.threshold.source,
        }
