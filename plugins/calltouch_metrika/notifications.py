"""Failure notifications of a pipeline: an e-mail through the SMTP provider's notifier.

Configured per pipeline in ``pipelines.yaml`` (``notify:``, :class:`calltouch_metrika.config.Notify`)
and wired by :func:`calltouch_metrika.dag_factory.pipeline_default_args` as every task's
``on_failure_callback`` (and ``on_success_callback`` for the two events a successful task can carry:
a ``LINKAGE_FAILURE`` under ``on_linkage_failure: warn``, and a share of rejected calls over a limit).

:class:`PipelineNotifier` is Airflow's notifier mechanism (``airflow.sdk.BaseNotifier`` via the
``apache-airflow-providers-smtp`` ``SmtpNotifier``): the message is built from the task context and
sent through the SMTP connection ``conn_id`` (host, port, login/password, ``from_email`` in its extras).
It names the pipeline, the local day (the run's data interval start on the pipeline's clock), the
task and the cause; every text passes Airflow's secrets masker, so no token registered with it (the
hooks register theirs, raw and URL-encoded) can reach a mailbox.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

__all__ = ["EVENTS", "PipelineNotifier", "day_of", "describe_cause"]

#: Events a pipeline can be notified of (``notify.on`` in pipelines.yaml).
EVENTS = ("failure", "linkage_failure", "rejects_over")

_LINKAGE = "LINKAGE_FAILURE"


def _redact(text: str) -> str:
    """``text`` with every secret the secrets masker knows replaced by ``***``."""
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # pragma: no cover - a future task SDK moving it
        return text
    return str(redact(text))


def day_of(context: Any, timezone: str) -> date | None:
    """The local day a run handles: its data interval start on ``timezone``'s clock (None if unknown)."""
    start = context.get("data_interval_start") or context.get("logical_date")
    if start is None:
        return None
    return start.astimezone(ZoneInfo(timezone)).date()


def describe_cause(exception: BaseException | str | None) -> str:
    """``ExceptionType: message`` of a task failure (the message first line-limited to 2,000 characters)."""
    if exception is None:
        return "the task failed (no exception recorded: killed, timed out or marked failed)"
    if isinstance(exception, str):
        return exception[:2000]
    return f"{type(exception).__name__}: {str(exception)[:2000]}"


class PipelineNotifier(SmtpNotifier):
    """E-mails a pipeline's failures (``on_failure_callback``) and warnings (``on_success_callback``).

    :param pipeline: the pipeline's name (``pipelines.yaml``), named in every message.
    :param timezone: the pipeline's IANA time zone: the day in the message is on its clock.
    :param to: recipients.
    :param smtp_conn_id: an ``smtp`` connection (``apache-airflow-providers-smtp``).
    :param from_email: the sender; ``None`` -> the connection's ``from_email`` extra.
    :param events: what to send: ``failure`` (any task failure), ``linkage_failure`` (Metrika linked no
        call of the day's upload: a failure under ``on_linkage_failure: fail``, a success under ``warn``),
        ``rejects_over`` (the upload task rejected more than ``rejects_over_percent`` % of the extracted
        calls; the ratio comes from its XCom ``{"extracted", "rejected", ...}``).
    :param rejects_over_percent: the limit for ``rejects_over`` (0-100).
    :param callback: which task callback this instance is: ``failure`` (``on_failure_callback``: the
        context's ``exception`` is the cause) or ``success`` (``on_success_callback``: the task's XCom is
        read for a warned ``LINKAGE_FAILURE`` or the rejected share).
    """

    def __init__(
        self,
        *,
        pipeline: str,
        timezone: str,
        to: str | Iterable[str],
        smtp_conn_id: str = "smtp_default",
        from_email: str | None = None,
        events: Sequence[str] = ("failure",),
        rejects_over_percent: float | None = None,
        callback: Literal["failure", "success"] = "failure",
    ) -> None:
        unknown = sorted(set(events) - set(EVENTS))
        if unknown:
            raise ValueError(f"unknown notification event(s) {unknown}; known: {list(EVENTS)}")
        super().__init__(
            to=list([to] if isinstance(to, str) else to), from_email=from_email, smtp_conn_id=smtp_conn_id
        )
        self.pipeline = pipeline
        self.timezone = timezone
        self.events = tuple(events)
        self.rejects_over_percent = rejects_over_percent
        self.callback = callback

    # -- which event, if any ------------------------------------------------------------------------
    def event(self, context: Any) -> tuple[str, str] | None:
        """``(event, cause)`` this context is about and the pipeline wants, else None."""
        ti = context.get("ti")
        if self.callback == "failure":
            cause = describe_cause(context.get("exception"))
            if _LINKAGE in cause and ("linkage_failure" in self.events or "failure" in self.events):
                return "linkage_failure", cause
            if "failure" in self.events:
                return "failure", cause
            return None
        value = self._return_value(ti)
        if not isinstance(value, dict):
            return None
        if "linkage_failure" in self.events and value.get("status") == _LINKAGE:
            return "linkage_failure", (
                f"Metrika could not link any call of upload {value.get('id')} to a visit ({_LINKAGE}); "
                "on_linkage_failure is warn, so the run succeeded"
            )
        # The upload task's XCom (operators/metrika.py): {"upload_id", "extracted", "uploaded", "rejected", ...}.
        is_upload = "upload_id" in value and "uploaded" in value
        if "rejects_over" in self.events and self.rejects_over_percent is not None and is_upload:
            extracted, rejected = value.get("extracted"), value.get("rejected")
            if isinstance(extracted, int) and isinstance(rejected, int) and extracted > 0:
                share = 100.0 * rejected / extracted
                if share > self.rejects_over_percent:
                    return "rejects_over", (
                        f"{rejected} of {extracted} calls rejected ({share:.1f}% > "
                        f"{self.rejects_over_percent:g}%); the reasons are in the rejects dataset"
                    )
        return None

    @staticmethod
    def _return_value(ti: Any) -> Any:
        if ti is None:
            return None
        try:
            return ti.xcom_pull(task_ids=ti.task_id, key="return_value")
        except Exception:
            return None

    # -- the message ----------------------------------------------------------------------------------
    def message(self, context: Any, event: str, cause: str) -> tuple[str, str]:
        """``(subject, plain text)`` of the notification, with secrets masked."""
        ti = context.get("ti")
        day = day_of(context, self.timezone)
        dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(ti, "dag_id", "?")
        what = {
            "failure": "failed",
            "linkage_failure": "LINKAGE_FAILURE",
            "rejects_over": "too many calls rejected",
        }[event]
        subject = f"[calltouch-metrika] {self.pipeline} {day or '?'}: {what}"
        lines = [
            f"Pipeline: {self.pipeline}",
            f"Day: {day.isoformat() if day else '?'} ({self.timezone})",
            f"Event: {event}",
            f"Cause: {cause}",
            f"DAG: {dag_id}",
            f"Run: {getattr(context.get('dag_run'), 'run_id', None) or context.get('run_id', '?')}",
            f"Task: {getattr(ti, 'task_id', '?')} (try {getattr(ti, 'try_number', '?')})",
        ]
        log_url = getattr(ti, "log_url", None)
        if log_url:
            lines.append(f"Log: {log_url}")
        return _redact(subject), _redact("\n".join(lines))

    def notify(self, context: Any) -> None:
        """Send the e-mail when the context carries an event the pipeline asked for; else nothing."""
        found = self.event(context)
        if found is None:
            return
        subject, text = self.message(context, *found)
        self.subject = subject
        self.html_content = f"<pre>{html.escape(text)}</pre>"
        super().notify(context)
