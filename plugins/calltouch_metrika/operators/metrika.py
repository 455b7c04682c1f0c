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

The transform (``transforms.calls``) is pure; this operator reads the Parquet written by the extract
task, runs it, writes the CSV and the rejects, uploads through the hook and logs a reconciled summary:
extracted = uploaded now + already sent + rejected.
"""

from __future__ import annotations

import io
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
    """The comment of uploads made before the call ledger (one per pipeline and interval).

    Still used to find such uploads when upgrading (``exactly_once.CounterSender.import_legacy``).
    Only Latin letters, digits, spaces, ``-`` and ``_`` (api-notes §3.2).
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
    """Upload the calls of the run's days that the counter's ledger does not hold yet.

    Returns (XCom) ``{"upload_id", "upload_ids", "counter_id", "comment", "extracted", "uploaded",
    "already_sent", "would_upload", "rejected", "rejects_by_reason", "days", "csv_path", "csv_paths",
    "rejects_path", "reused",
    "dry_run", "forced", "status", "join_threshold", "join_threshold_source"}``. ``upload_id`` is the
    newest upload of this run, else (nothing new) the newest upload of the run's own day from the
    ledger (``reused`` true), else None (the sensor then skips). ``uploaded`` counts calls sent now.

    :param pipeline: the pipeline name (part of the comment and of the file names).
    :param extract: the extract task's XCom (pass ``extract_task.output``), with ``paths``/``path``,
        ``site_id``, ``date_from``, ``date_to`` (exclusive), ``days`` and ``main_days``.
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
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_wait
        self.compact_after_files = compact_after_files

    # -- pieces ---------------------------------------------------------------------------------
    def _extract_info(self) -> tuple[int, list[tuple[date, str]], set[date]]:
        """``(site_id, [(day, parquet path)], main days)`` from the extract XCom."""
        x = self.extract
        if not isinstance(x, Mapping):
            raise AirflowException(
                f"'extract' must be the extract task's XCom dict (pass extract_task.output), got {type(x).__name__}"
            )
        try:
            site_id = int(x["site_id"])
            d_from = date.fromisoformat(str(x["date_from"]))
            d_to = date.fromisoformat(str(x["date_to"]))
            paths = list(x.get("paths") or [x["path"]])
            days = [date.fromisoformat(str(d)) for d in (x.get("days") or [])]
            main = {date.fromisoformat(str(d)) for d in (x.get("main_days") or [])}
        except (KeyError, ValueError) as exc:
            raise AirflowException(f"the extract XCom lacks or has a bad {exc}: {dict(x)}") from None
        if not days:
            days = [d_from + timedelta(days=i) for i in range((d_to - d_from).days)]
        if len(days) != len(paths):
            raise AirflowException(
                f"the extract XCom has {len(paths)} path(s) for {len(days)} day(s): {dict(x)}"
            )
        return site_id, list(zip(days, paths, strict=True)), main or set(days)

    def _read(self, path: str) -> Any:
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath

        with ObjectStoragePath(path).open("rb") as fh:
            return pq.read_table(io.BytesIO(fh.read()))

    def _transform(self, table: Any, site_id: int, threshold: datetime, now: datetime) -> Any:
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
            join_threshold=threshold,
        )
        return calls_to_metrika(table, options, now=now)

    def _write_rejects(self, rejects: Any, path: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(rejects, preserve_index=False), buf)
        storage.atomic_write_bytes(path, buf.getvalue())

    @staticmethod
    def _csv(frame: Any) -> bytes:
        from calltouch_metrika.transforms.calls import metrika_csv_bytes

        return metrika_csv_bytes(frame)

    def _client_id_type(self) -> str:
        from calltouch_metrika.transforms.calls import metrika_client_id_type

        return metrika_client_id_type(self.identifier)

    # -- execute --------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        """Transform each day, upload what the ledger lacks (under the counter's lease), log the summary."""
        from calltouch_metrika.exactly_once import read_join_threshold
        from calltouch_metrika.hooks.metrika import MetrikaHook
        from calltouch_metrika.ledger import CallLedger

        dry_run = as_bool(self.dry_run, "dry_run")
        force = as_bool(self.force_reupload, "force_reupload")
        counter_id = int(self.counter_id)
        site_id, day_paths, main_days = self._extract_info()
        now = datetime.now(UTC)
        hook = MetrikaHook(metrika_conn_id=self.metrika_conn_id)
        threshold = read_join_threshold(hook, counter_id, now=now, window_days=self.linkage_window_days)
        (self.log.warning if threshold.source == "fallback" else self.log.info)("%s", threshold.note)
        ledger = CallLedger(self.storage_root, counter_id)
        run = {
            "now": now,
            "site_id": site_id,
            "counter_id": counter_id,
            "threshold": threshold,
            "force": force,
            "main_days": main_days,
            "run_id": str(context.get("run_id") or "manual") if isinstance(context, Mapping) else "manual",
        }
        if dry_run:
            ledger.refresh()
            days = [self._day(run, ledger, None, None, d, p, dry_run=True) for d, p in day_paths]
        else:
            from calltouch_metrika.exactly_once import CounterSender
            from calltouch_metrika.lease import CounterLease, default_holder

            ti = context.get("ti") if isinstance(context, Mapping) else None
            holder = default_holder(with_task=False) + (
                f" {ti.dag_id}/{ti.run_id}/{ti.task_id}" if ti is not None else ""
            )
            with CounterLease(
                self.storage_root, counter_id, ttl=self.lease_ttl, wait=self.lease_wait, holder=holder
            ) as lease:
                if lease.waited >= 1:
                    self.log.info(
                        "Waited %.1f s for counter %s (another run was uploading)", lease.waited, counter_id
                    )
                sender = CounterSender(
                    hook=hook,
                    ledger=ledger,
                    lease=lease,
                    site_id=site_id,
                    pipeline=self.pipeline,
                    lookup_attempts=self.lookup_attempts,
                    lookup_delay=self.lookup_delay,
                    logger=self.log,
                )
                uploadings = sender.reconcile()
                days = [self._day(run, ledger, sender, uploadings, d, p, dry_run=False) for d, p in day_paths]
                if len(ledger.files()) > self.compact_after_files:
                    merged = ledger.compact()
                    self.log.info(
                        "Compacted counter %s's ledger: %d files merged into one", counter_id, merged
                    )
        return self._summary(run, ledger, days, dry_run=dry_run, force=force)

    def _day(
        self,
        run: dict[str, Any],
        ledger: Any,
        sender: Any,
        uploadings: list[dict[str, Any]] | None,
        day: date,
        path: str,
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        """One day: transform, subtract the ledger, upload (or would), write the files; the day's counts."""
        from calltouch_metrika.exactly_once import FORCE_WARNING

        site_id, counter_id = run["site_id"], run["counter_id"]
        result = self._transform(self._read(path), site_id, run["threshold"].at, run["now"])
        counts = result.counts
        extracted = int(_count(counts, "extracted"))
        uploadable = int(_count(counts, "uploaded"))
        rejected = int(_count(counts, "rejected"))
        by_reason = {str(k): int(v) for k, v in dict(_count(counts, "rejects_by_reason")).items()}
        if (
            extracted != uploadable + rejected
            or uploadable != len(result.upload)
            or rejected != len(result.rejects)
        ):
            raise AirflowException(
                f"{day}: counts do not reconcile: extracted {extracted} != uploadable {uploadable} + rejected "
                f"{rejected} (CSV rows {len(result.upload)}, rejects rows {len(result.rejects)})"
            )
        rejects_path = storage.rejects_path(self.storage_root, counter_id, day, self.pipeline)
        self._write_rejects(result.rejects, rejects_path)
        ids = [int(i) for i in result.upload.index]
        if sender is not None and not run["force"]:
            sender.import_legacy(
                day,
                uploadings or [],
                csv_path=storage.metrika_csv_path(self.storage_root, counter_id, day, self.pipeline),
                fallback_ids=ids,
            )
        held = ledger.held_call_ids(site_id)
        forced = run["force"] and day in run["main_days"]
        new = ids if forced else [i for i in ids if i not in held]
        out: dict[str, Any] = {
            "day": day.isoformat(),
            "extracted": extracted,
            "uploaded": 0,
            "already_sent": uploadable - (0 if forced else len(new)),
            "rejected": rejected,
            "rejects_by_reason": by_reason,
            "rejects_path": str(rejects_path),
            "upload_id": None,
            "status": None,
            "comment": None,
            "csv_path": None,
            "forced": forced,
            "would_upload": 0,
        }
        if forced:
            out["already_sent"] = 0
            again = sum(1 for i in ids if i in held)
            if again:
                self.log.warning("%s", FORCE_WARNING.format(n=again, day=day))
        if not new:
            return out
        frame = result.upload.loc[new] if len(new) != len(ids) else result.upload
        data = self._csv(frame)
        if dry_run:
            csv_path = storage.dry_run_csv_path(
                self.storage_root, counter_id, day, self.pipeline, run["run_id"]
            )
            storage.atomic_write_bytes(csv_path, data)
            out.update(would_upload=len(new), csv_path=str(csv_path))
            return out
        from calltouch_metrika.lease import create_exclusive

        key, comment = sender.next_key(day)
        csv_path = storage.upload_csv_path(self.storage_root, counter_id, day, self.pipeline, key.part)
        if not create_exclusive(csv_path, data):
            raise AirflowException(f"the stored CSV of a new upload part already exists: {csv_path}")
        client_id_type = self._client_id_type()
        sent = sender.send(
            key,
            comment,
            new,
            lambda c: sender.hook.upload_calls(
                counter_id, data, comment=c, new_goal_name=self.new_goal_name, client_id_type=client_id_type
            ),
            forced=forced,
        )
        out.update(
            uploaded=len(new),
            upload_id=sent.upload_id,
            status=sent.status,
            comment=comment,
            csv_path=str(csv_path),
        )
        return out

    def _summary(
        self, run: dict[str, Any], ledger: Any, days: list[dict[str, Any]], *, dry_run: bool, force: bool
    ) -> dict[str, Any]:
        site_id, counter_id = run["site_id"], run["counter_id"]
        total = {
            k: sum(d[k] for d in days)
            for k in ("extracted", "uploaded", "already_sent", "rejected", "would_upload")
        }
        by_reason: dict[str, int] = {}
        for d in days:
            for k, v in d["rejects_by_reason"].items():
                by_reason[k] = by_reason.get(k, 0) + v
        if (
            total["extracted"]
            != total["uploaded"] + total["would_upload"] + total["already_sent"] + total["rejected"]
        ):
            raise AirflowException(f"counts do not reconcile: {total}")
        uploads = [d for d in days if d["upload_id"] is not None]
        upload_id = uploads[-1]["upload_id"] if uploads else None
        status = uploads[-1]["status"] if uploads else None
        reused = False
        if upload_id is None and not dry_run:
            own = [
                st
                for st in ledger.parts().values()
                if st.key.pipeline == self.pipeline
                and st.key.day in run["main_days"]
                and st.upload_id is not None
            ]
            if own:
                latest = max(own, key=lambda st: st.key.part)
                upload_id, status, reused = latest.upload_id, latest.status, True
        lines = []
        for d in days:
            if dry_run:
                act = f"would upload {d['would_upload']}" if d["would_upload"] else "would upload nothing new"
            elif d["upload_id"] is not None:
                act = f"uploaded {d['uploaded']} as {d['upload_id']} ({d['comment']!r})"
                if d["forced"]:
                    act += " [forced re-send]"
            else:
                act = "nothing new to upload"
            kind = "day" if date.fromisoformat(d["day"]) in run["main_days"] else "lookback"
            lines.append(
                f"  {d['day']} ({kind}): extracted {d['extracted']} = uploaded {d['uploaded'] + d['would_upload']} "
                f"+ already sent {d['already_sent']} + rejected {d['rejected']}; {act}"
            )
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) or "none"
        verb = "would upload" if dry_run else "uploaded"
        self.log.info(
            "Upload summary for %s, site %s -> counter %s%s:\n"
            "  extracted %d = %s %d + already sent %d + rejected %d (by reason: %s)\n%s\n"
            "  %s\n  uploads this run: %s; ledger: %s",
            self.pipeline,
            site_id,
            counter_id,
            " (DRY RUN: nothing uploaded)" if dry_run else "",
            total["extracted"],
            verb,
            total["would_upload"] if dry_run else total["uploaded"],
            total["already_sent"],
            total["rejected"],
            reasons,
            "\n".join(lines),
            run["threshold"].note,
            [d["upload_id"] for d in uploads] or "none",
            ledger.dir,
        )
        return {
            "upload_id": upload_id,
            "upload_ids": [d["upload_id"] for d in uploads],
            "counter_id": counter_id,
            "comment": uploads[-1]["comment"] if uploads else None,
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
            "dry_run": dry_run,
            "forced": force,
            "status": status,
            "join_threshold": run["threshold"].at.isoformat(),
            "join_threshold_source": run["threshold"].source,
        }
