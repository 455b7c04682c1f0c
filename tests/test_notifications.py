"""Failure notifications (``notify:`` in pipelines.yaml) delivered to a real SMTP server on loopback.

The calls DAG runs through ``dag.test()`` against the sandbox; the e-mails go through the SMTP
provider's notifier (:class:`calltouch_metrika.notifications.PipelineNotifier`) to an ``aiosmtpd``
server on 127.0.0.1, and are read back as the recipient would see them.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.launch import free_port
from tests.sensors.calls_pipeline import recent_day, run_dag, task_states, write_config

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

BAD_TOKEN = "bad-ct-token-must-not-leak-7f3a"


class Inbox:
    """Messages an ``aiosmtpd`` server on loopback received."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:  # aiosmtpd calls handle_DATA
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def texts(self) -> list[tuple[str, str]]:
        """``(subject, body)`` of every message, body as plain text (all parts)."""
        out = []
        for msg in self.messages:
            body = "\n".join(
                part.get_content() for part in msg.walk() if part.get_content_maintype() == "text"
            )
            out.append((str(msg["Subject"]), html.unescape(body)))
        return out


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """An SMTP server on 127.0.0.1 and the ``smtp_test`` connection pointing at it."""
    from aiosmtpd.controller import Controller

    box = Inbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_TEST",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": port,
                    "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.test"},
                }
            ),
        )
        yield box
    finally:
        controller.stop()


def _pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, Any]:
    return write_config(
        tmp_path,
        monkeypatch,
        name="notified",
        notify={"conn_id": "smtp_test", "to": ["data-team@example.test"], **overrides},
    )


def test_a_failed_day_is_mailed_with_pipeline_day_and_cause_and_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: Any, airflow_db: Any, inbox: Inbox
) -> None:
    from airflow.utils.state import DagRunState

    monkeypatch.setenv(
        "AIRFLOW_CONN_CT_BAD",
        json.dumps({"conn_type": "calltouch", "host": sandbox.url, "password": BAD_TOKEN}),
    )
    _pipeline(tmp_path, monkeypatch, on=["failure"])
    path = tmp_path / "pipelines.yaml"
    path.write_text(path.read_text().replace("name: notified", "name: notified\n  calltouch_conn_id: ct_bad"))
    day = recent_day()

    dr = run_dag("calltouch_calls_to_metrika__notified", day)

    assert dr.state == DagRunState.FAILED, task_states(dr)
    assert task_states(dr)["extract"] == "failed"
    ((subject, body),) = inbox.texts()
    assert "notified" in subject and day.isoformat() in subject
    assert "Pipeline: notified" in body
    assert f"Day: {day.isoformat()} (Europe/Moscow)" in body
    assert "Cause: AuthenticationError" in body, body
    assert "Task: extract" in body
    for secret in (BAD_TOKEN, "sandbox-ct-token", "sandbox-ym-token"):
        assert secret not in subject + body


def test_rejects_over_the_limit_are_mailed_once_by_the_upload_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: Any, airflow_db: Any, inbox: Inbox
) -> None:
    from airflow.utils.state import DagRunState

    _pipeline(tmp_path, monkeypatch, on=["failure", {"rejects_over": 0}])
    day = recent_day()

    dr = run_dag("calltouch_calls_to_metrika__notified", day)

    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    assert len(inbox.texts()) == 1, inbox.texts()  # exactly one: the upload task's; no failure
    ((subject, body),) = inbox.texts()
    assert "too many calls rejected" in subject and day.isoformat() in subject
    assert "Event: rejects_over" in body and "Task: upload" in body
    assert "calls rejected (" in body and "> 0%" in body
    assert "sandbox-ct-token" not in body and "sandbox-ym-token" not in body
