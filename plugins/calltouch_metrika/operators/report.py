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

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context


class LinkageReportOperator(BaseOperator):
    """Write the linkage report row of each upload of this run (one Parquet file per upload).

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
        """The final ``uploading`` record: the sensor's XCom, else one GET (None if not final yet)."""
        from calltouch_metrika.linkage.dataset import FINAL_STATUSES

        if isinstance(waited, Mapping) and int(waited.get("id", -1)) == upload_id:
            return dict(waited)
        from calltouch_metrika.hooks.metrika import MetrikaHook

        record = MetrikaHook(metrika_conn_id=self.metrika_conn_id).get_calls_uploading(counter_id, upload_id)
        if record.get("status") not in FINAL_STATUSES:
            self.log.warning(
                "Upload %s is not final yet (status %s): no report row for it",
                upload_id,
                record.get("status"),
            )
            return None
        return record

    def execute(self, context: Context) -> dict[str, Any]:
        """Pull the upstream XComs, build one row per upload, write each file once."""
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
        if main_days:
            day, day_to = date.fromisoformat(str(main_days[0])), date.fromisoformat(str(main_days[-1]))
        else:
            day = date.fromisoformat(str(extract["date_from"]))
            day_to = date.fromisoformat(str(extract["date_to"])) - timedelta(days=1)
        counts = {k: upload[k] for k in ("extracted", "uploaded", "rejected", "rejects_by_reason")}
        # The ledger's top-ups report several uploads per run: [{"upload_id", "uploaded", "kind"}, ...].
        uploads = list(upload.get("uploads") or [])
        if not uploads and upload.get("upload_id") is not None:
            uploads = [{"upload_id": upload["upload_id"], "uploaded": upload["uploaded"], "kind": "first"}]
        dag_run = context["dag_run"]
        base = {
            "pipeline": self.pipeline,
            "counter_id": counter_id,
            "site_id": int(extract["site_id"]),
            "day": day,
            "day_to": day_to,
            "dag_id": dag_run.dag_id,
            "run_id": dag_run.run_id,
        }
        rows = []
        if not uploads:  # nothing uploaded: no calls, or every call rejected
            rows.append(
                linkage_row(LinkageUpload(**base, counts=counts, uploading=None), now=datetime.now(UTC))
            )
        for item in uploads:
            upload_id = int(item["upload_id"])
            record = self._final_record(counter_id, upload_id, waited)
            if record is None:
                continue
            rows.append(
                linkage_row(
                    LinkageUpload(
                        **base,
                        counts=counts,
                        uploading=record,
                        uploaded=int(item["uploaded"]),
                        upload_kind=str(item.get("kind") or "first"),
                        comment=upload.get("comment"),
                    ),
                    now=datetime.now(UTC),
                )
            )
        written, kept = [], []
        for row in rows:
            path, fresh = write_linkage(self.storage_root, row)
            (written if fresh else kept).append(str(path))
            self.log.info(
                "Linkage report %s: %s %s, upload %s: extracted %d, uploaded %d, rejected %d; status %s; "
                "rows in file %s, accepted %s, linked %s (share %s); static %s, dynamic %s; %s s to final -> %s",
                self.pipeline,
                counter_id,
                row["day"],
                row["upload_id"],
                row["extracted"],
                row["uploaded"],
                row["rejected"],
                row["status"],
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
