"""LinkageReportOperator: when a day's upload has reached its final status, write its linkage report row.

Why a task of its own: the upload task knows the counts (extracted, rejected by reason, uploaded), the
status sensor knows Metrika's final ``uploading`` record (source/line/linked quantities, static vs
dynamic); the report row needs both, and must be written even when the sensor fails the run on
``LINKAGE_FAILURE`` (the day users most need to see). The DAG wires it as a *teardown* of the day's
tasks: it runs whatever happened upstream, and its own state never decides the run's state.

It reads the XComs of the extract, upload and wait tasks (``xcom_pull``, so a failed or skipped
upstream task is simply absent), and writes through :mod:`calltouch_metrika.linkage.dataset`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context


_PART_RE = re.compile(r"(\d{4}-\d{2}-\d{2}) part (\d+)$")


def _kind(comment: Any) -> str:
    """``topup`` for part 2+ of a day (the ledger's comment ``... YYYY-MM-DD part N``), else ``first``."""
    m = _PART_RE.search(str(comment or ""))
    return "topup" if m and int(m.group(2)) > 1 else "first"


def _comment_day(comment: Any) -> date | None:
    m = _PART_RE.search(str(comment or ""))
    return date.fromisoformat(m.group(1)) if m else None


class LinkageReportOperator(BaseOperator):
    """Write the linkage report row of each (day, upload) of this run (one Parquet file per upload).

    The upload task's ``days`` give one row per upload it made: the run's own day and any lookback day
    it topped up (``upload_kind`` ``first`` or ``topup``, from the part number in the upload's comment),
    each with that day's counts. A run that only re-used an earlier upload (a retry) reports that
    upload with its calls from the call ledger. Each row carries the upload's final status: the status
    sensor's record for the newest upload, one Metrika lookup for the others (status unknown when the
    lookup fails or the upload is not final yet: logged, and the row is still written).

    Returns (XCom) ``{"written": [paths], "kept": [paths], "rows": int}``. Skips when there is nothing
    to report: the extract or upload task did not succeed, or it was a dry run.

    :param pipeline: the pipeline name.
    :param counter_id: the Metrika counter.
    :param storage_root: path or fsspec URL of the storage root.
    :param metrika_conn_id: the Metrika connection id (to read an upload's final record when the status
        sensor did not return it, e.g. it failed the run on ``LINKAGE_FAILURE``).
    :param extract_task_id: the extract task (its XCom gives the site and the interval).
    :param upload_task_id: the upload task (its XCom gives the counts and the upload id).
    :param wait_task_id: the status sensor (its XCom is the final ``uploading`` record).
    """

    template_fields: Sequence[str] = ("counter_id", "storage_root")
    ui_color = "#e3f0e3"

    def __init__(
        self,
        *,
        pipeline: str,
        counter_id: int | str,
        storage_root: str,
        metrika_conn_id: str = "metrika_default",
        extract_task_id: str = "extract",
        upload_task_id: str = "upload",
        wait_task_id: str = "wait",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.counter_id = counter_id
        self.storage_root = storage_root
        self.metrika_conn_id = metrika_conn_id
        self.extract_task_id = extract_task_id
        self.upload_task_id = upload_task_id
        self.wait_task_id = wait_task_id

    def _final_record(self, counter_id: int, upload_id: int, waited: Any) -> dict[str, Any] | None:
        """The final ``uploading`` record: the sensor's XCom, else one GET; None when unknown.

        Unknown: the upload is not final yet, or the lookup failed (logged; the row is written with a
        null status, and a later report of the same upload replaces it).
        """
        from calltouch_metrika.linkage.dataset import FINAL_STATUSES

        if isinstance(waited, Mapping) and int(waited.get("id", -1)) == upload_id:
            return dict(waited)
        try:
            from calltouch_metrika.hooks.metrika import MetrikaHook

            hook = MetrikaHook(metrika_conn_id=self.metrika_conn_id)
            record = hook.get_calls_uploading(counter_id, upload_id)
        except Exception as err:  # a report never fails the run: the row says "unknown"
            self.log.warning(
                "Upload %s: looking up its status failed (%s: %s); its row has status unknown",
                upload_id,
                type(err).__name__,
                err,
            )
            return None
        if record.get("status") not in FINAL_STATUSES:
            self.log.warning(
                "Upload %s is not final yet (status %s); its row has status unknown",
                upload_id,
                record.get("status"),
            )
            return None
        return record

    def _reused_calls(self, counter_id: int, upload_id: int) -> int | None:
        """The calls of an earlier upload this run re-used (the ledger's part), or None if unknown."""
        try:
            from calltouch_metrika.ledger import CallLedger

            parts = CallLedger(self.storage_root, counter_id).parts().values()
            return next((len(p.call_ids) for p in parts if p.upload_id == upload_id), None)
        except Exception as err:
            self.log.warning("Upload %s: reading the call ledger failed (%s)", upload_id, err)
            return None

    def _upload_items(self, upload: Mapping[str, Any], counter_id: int) -> list[dict[str, Any]]:
        """One item per (day, upload) of the upload task's XCom, plus the days with no upload.

        Item: ``{"day": date, "counts": {...}, "upload_id": int | None, "uploaded": int, "kind": str,
        "comment": str | None}``. ``kind`` is ``first`` for part 1 of a day (or a pre-ledger upload),
        ``topup`` for later parts (api-notes: one comment per pipeline, day and part; ``ledger``).
        """
        keys = ("extracted", "uploaded", "rejected", "rejects_by_reason")
        items: list[dict[str, Any]] = []
        days = [d for d in upload.get("days") or [] if isinstance(d, Mapping)]
        main = {str(d) for d in upload.get("main_days") or []}
        for d in days:
            counts = {k: d.get(k) or ({} if k == "rejects_by_reason" else 0) for k in keys}
            item = {
                "day": date.fromisoformat(str(d["day"])),
                "counts": counts,
                "upload_id": None if d.get("upload_id") is None else int(d["upload_id"]),
                "uploaded": int(d.get("uploaded") or 0),
                "kind": _kind(d.get("comment")),
                "comment": d.get("comment"),
                "already_sent": int(d.get("already_sent") or 0),
                "main": not main or str(d["day"]) in main,
            }
            items.append(item)
        reused = upload.get("upload_id")
        if upload.get("reused") and reused is not None:  # this run only re-used an earlier upload
            reused_day = _comment_day(upload.get("comment"))
            target = next(
                (
                    i
                    for i in items
                    if i["upload_id"] is None and (reused_day is None or i["day"] == reused_day)
                ),
                None,
            )
            calls = self._reused_calls(counter_id, int(reused))
            if target is not None and calls is not None:
                target.update(
                    upload_id=int(reused),
                    uploaded=calls,
                    kind=_kind(upload.get("comment")),
                    comment=upload.get("comment"),
                    reused=True,
                )
        return items

    def execute(self, context: Context) -> dict[str, Any]:
        """Pull the upstream XComs, build one row per (day, upload), write each file once."""
        from calltouch_metrika.linkage.dataset import LinkageUpload, linkage_row, write_linkage

        ti = context["ti"]
        extract = ti.xcom_pull(task_ids=self.extract_task_id)
        upload = ti.xcom_pull(task_ids=self.upload_task_id)
        waited = ti.xcom_pull(task_ids=self.wait_task_id)
        if not isinstance(extract, Mapping) or not isinstance(upload, Mapping):
            raise AirflowSkipException("nothing to report: the extract or upload task did not succeed")
        if upload.get("dry_run"):
            raise AirflowSkipException("nothing to report: a dry run uploads nothing")
        counter_id = int(self.counter_id)
        main_days = list(extract.get("main_days") or [])  # the run's own days (without lookback days)
        dag_run = context["dag_run"]
        common = {
            "pipeline": self.pipeline,
            "counter_id": counter_id,
            "site_id": int(extract["site_id"]),
            "dag_id": dag_run.dag_id,
            "run_id": dag_run.run_id,
        }
        items = self._upload_items({**upload, "main_days": main_days}, counter_id)
        rows = []
        if not items:  # an upload XCom without per-day counts: one row for the run's interval
            if main_days:
                day, day_to = date.fromisoformat(str(main_days[0])), date.fromisoformat(str(main_days[-1]))
            else:
                day = date.fromisoformat(str(extract["date_from"]))
                day_to = date.fromisoformat(str(extract["date_to"])) - timedelta(days=1)
            counts = {k: upload[k] for k in ("extracted", "uploaded", "rejected", "rejects_by_reason")}
            record = None
            if upload.get("upload_id") is not None:
                record = self._final_record(counter_id, int(upload["upload_id"]), waited)
            rows.append(
                linkage_row(
                    LinkageUpload(
                        **common,
                        day=day,
                        day_to=day_to,
                        counts=counts,
                        uploading=record,
                        upload_id=upload.get("upload_id"),
                        comment=upload.get("comment"),
                    ),
                    now=datetime.now(UTC),
                )
            )
        for item in items:
            if item["upload_id"] is None:
                if not item["main"]:
                    continue  # a lookback day with nothing new: its uploads were reported when made
                if item["already_sent"]:
                    self.log.info(
                        "%s: nothing new to upload; its %d calls already sent were reported by the runs "
                        "that uploaded them",
                        item["day"],
                        item["already_sent"],
                    )
                    continue
            record = None
            if item["upload_id"] is not None:
                record = self._final_record(counter_id, item["upload_id"], waited)
            rows.append(
                linkage_row(
                    LinkageUpload(
                        **common,
                        day=item["day"],
                        day_to=item["day"],
                        counts=item["counts"],
                        uploading=record,
                        uploaded=item["uploaded"],
                        upload_kind=item["kind"],
                        comment=item["comment"],
                        upload_id=item["upload_id"],
                    ),
                    now=datetime.now(UTC),
                )
            )
        written, kept = [], []
        for row in rows:
            path, fresh = write_linkage(self.storage_root, row)
            (written if fresh else kept).append(str(path))
            self.log.info(
                "Linkage report %s: %s %s, upload %s (%s): extracted %d, uploaded %d, already sent %d, "
                "rejected %d; status %s; "
                "rows in file %s, accepted %s, linked %s (share %s); static %s, dynamic %s; %s s to final -> %s",
                self.pipeline,
                counter_id,
                row["day"],
                row["upload_id"],
                row["upload_kind"],
                row["extracted"],
                row["uploaded"],
                row["already_uploaded"],
                row["rejected"],
                row["status"] or "unknown",
                row["source_quantity"],
                row["line_quantity"],
                row["linked_quantity"],
                "n/a" if row["linked_share"] is None else f"{row['linked_share']:.1%}",
                row["static_calls_quantity"],
                row["dynamic_calls_quantity"],
                "n/a" if row["seconds_to_final"] is None else f"{row['seconds_to_final']:.0f}",
                path if fresh else f"{path} (already reported: kept)",
            )
        return {"written": written, "kept": kept, "rows": len(rows)}
