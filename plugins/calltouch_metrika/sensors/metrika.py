"""UploadStatusSensor: waits until Metrika has processed a calls upload, then returns its record.

Why: an upload is only accepted by ``upload_calls``; matching the calls to visits happens later
(minutes to hours). The daily DAG is not done until the upload is ``PROCESSED``, so a person sees in
one place whether the day's calls reached Metrika and how many of them were linked.

Deferrable by default (``[operators] default_deferrable``, true when unset): it checks once on the worker and, if the upload is not finished, hands the
waiting to :class:`~calltouch_metrika.triggers.metrika.UploadStatusTrigger` (no worker slot held).
With ``deferrable=False`` it works in ``poke`` or ``reschedule`` mode through the sync hook, with
exponentially growing intervals capped at ``max_poke_interval``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from calltouch_metrika.constants import UPLOAD_LINKAGE_FAILURE, UPLOAD_TERMINAL_STATUSES
from calltouch_metrika.exceptions import UploadFailedError
from calltouch_metrika.sensors._base import DeferrableStatusSensor, default_deferrable
from calltouch_metrika.triggers.metrika import UploadStatusTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


def resolve_upload_id(upload: Any) -> int | None:
    """The upload id from the upload task's XCom dict, a bare id (int or digits), or None."""
    if upload is None or upload == "" or upload == "None":
        return None
    if isinstance(upload, Mapping):
        return resolve_upload_id(upload.get("upload_id"))
    if isinstance(upload, bool):
        raise ValueError(f"not an upload id: {upload!r}")
    if isinstance(upload, int):
        return upload
    text = str(upload).strip()
    if text.isdigit():
        return int(text)
    raise ValueError(f"not an upload id nor the upload task's XCom dict: {upload!r}")


class UploadStatusSensor(DeferrableStatusSensor):
    """Wait for a Metrika calls upload to finish; return the final ``uploading`` record (XCom).

    :param counter_id: the Metrika counter.
    :param upload: the upload task's XCom (a dict with ``upload_id``; pass ``upload_task.output``) or an
        upload id. ``None`` (an empty day, a dry run) skips the sensor.
    :param metrika_conn_id: the Metrika connection id. Templated.
    :param on_linkage_failure: ``"fail"`` raises :class:`UploadFailedError` when Metrika ends in
        ``LINKAGE_FAILURE`` (no identifier matched a visit); ``"warn"`` logs a warning and succeeds.
    :param deferrable: wait in the triggerer instead of on a worker; default: Airflow's
        ``[operators] default_deferrable``, true when unset.
    :param poke_interval: seconds before the first re-check; later waits grow up to ``max_poke_interval``.
    :param max_poke_interval: the longest wait between two checks.
    :param timeout: seconds to wait in all; the timeout message names the upload.
    """

    template_fields: Sequence[str] = ("upload", "metrika_conn_id", "counter_id", "on_linkage_failure")
    ui_color = "#fcecd4"

    def __init__(
        self,
        *,
        counter_id: int | str,
        upload: Any,
        metrika_conn_id: str = "metrika_default",
        on_linkage_failure: str = "fail",
        deferrable: bool = default_deferrable(),
        poke_interval: float = 5.0,
        max_poke_interval: float = 600.0,
        timeout: float = 24 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            deferrable=deferrable,
            poke_interval=poke_interval,
            max_poke_interval=max_poke_interval,
            timeout=timeout,
            **kwargs,
        )
        self.counter_id = counter_id
        self.upload = upload
        self.metrika_conn_id = metrika_conn_id
        self.on_linkage_failure = on_linkage_failure
        self._upload_id: int | None = None

    # -- helpers -------------------------------------------------------------------------------
    def _check_args(self) -> int:
        if self.on_linkage_failure not in ("fail", "warn"):
            raise ValueError(f"on_linkage_failure must be 'fail' or 'warn', got {self.on_linkage_failure!r}")
        upload_id = resolve_upload_id(self.upload)
        if upload_id is None:
            why = ""
            if isinstance(self.upload, Mapping):
                if self.upload.get("dry_run"):
                    why = " (dry run: nothing was uploaded)"
                elif self.upload.get("extracted") == 0:
                    why = " (no calls that day)"
                elif self.upload.get("uploaded") == 0:
                    why = " (every call was rejected; see the rejects dataset)"
            raise AirflowSkipException(f"no upload to wait for{why}")
        self._upload_id = upload_id
        return upload_id

    def _hook(self) -> Any:
        from calltouch_metrika.hooks.metrika import MetrikaHook

        return MetrikaHook(metrika_conn_id=self.metrika_conn_id)

    def _finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """Judge a terminal record: fail or warn on LINKAGE_FAILURE, warn on dropped lines; log a summary."""
        status = record.get("status")
        source = record.get("source_quantity")
        lines = record.get("line_quantity")
        self.log.info(
            "Upload %s on counter %s finished: status %s; rows in file %s, rows accepted %s; "
            "static %s, dynamic %s%s",
            record.get("id", self._upload_id),
            self.counter_id,
            status,
            source,
            lines,
            record.get("static_calls_quantity"),
            record.get("dynamic_calls_quantity"),
            f", linked {record['linked_quantity']}" if "linked_quantity" in record else "",
        )
        if isinstance(source, int) and isinstance(lines, int) and lines < source:
            self.log.warning(
                "Metrika accepted %d of %d rows of upload %s: %d row(s) failed its validation",
                lines,
                source,
                self._upload_id,
                source - lines,
            )
        if status == UPLOAD_LINKAGE_FAILURE:
            msg = (
                f"Metrika could not link any call of upload {self._upload_id} (counter {self.counter_id}) "
                "to a visit (LINKAGE_FAILURE): the identifiers are unknown to this counter, or the calls "
                "are older than the 21-day linkage window. Static calls still reach the call reports."
            )
            if self.on_linkage_failure == "fail":
                raise UploadFailedError(msg)
            self.log.warning("%s (on_linkage_failure=warn: not failing)", msg)
        return record

    # -- poke / reschedule ----------------------------------------------------------------------
    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One status check through the sync hook."""
        upload_id = self._upload_id if self._upload_id is not None else self._check_args()
        record = self._hook().get_calls_uploading(int(self.counter_id), upload_id)
        status = record.get("status")
        self.log.info("Upload %s on counter %s: status %s", upload_id, self.counter_id, status)
        if status in UPLOAD_TERMINAL_STATUSES:
            return PokeReturnValue(is_done=True, xcom_value=self._finish(record))
        return False

    def execute(self, context: Context) -> Any:
        """Skip without an upload; else poke once and defer, or poke/reschedule until done."""
        upload_id = self._check_args()
        return self.poke_or_defer(
            context,
            trigger=lambda **polling: UploadStatusTrigger(
                metrika_conn_id=self.metrika_conn_id,
                counter_id=int(self.counter_id),
                upload_id=upload_id,
                **polling,
            ),
            timeout_message=lambda exc: (
                f"timed out waiting for upload {upload_id} on counter {self.counter_id}: {exc}"
            ),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: success -> judge the record; timeout/error -> fail with the upload id."""
        self._upload_id = event.get("upload_id", self._upload_id)
        status = event.get("status")
        if status == "success":
            return self._finish(event["uploading"])
        if status == "timeout":
            raise AirflowSensorTimeout(
                event.get("message") or f"timed out waiting for upload {self._upload_id}"
            )
        message = event.get("message") or f"waiting for upload {self._upload_id} failed: {event}"
        if event.get("permanent"):
            raise AirflowFailException(message)  # a bad token or unknown upload: retrying cannot help
        raise AirflowException(message)
