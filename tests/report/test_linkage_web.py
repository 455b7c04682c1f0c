"""The linkage report page and its data endpoint, mounted by the plugin in Airflow's real API server app.

``airflow.api_fastapi.app.create_app()`` (the app ``airflow api-server`` serves) loads our plugin from
the plugins folder; requests go through it with Airflow's own JWT auth (SimpleAuthManager). The rows
come from report files written with the dataset's own writer. The CLI prints the same report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.sensors.calls_pipeline import COUNTER_ID, SITE_ID
from tests.sensors.calls_pipeline import write_config as _write_config

pytestmark = [pytest.mark.airflow]

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/calltouch-metrika"


def _row(root: str, day: date, upload_id: int | None, **over: Any) -> dict[str, Any]:
    from calltouch_metrika.linkage.dataset import LinkageUpload, linkage_row, write_linkage

    uploaded = over.pop("uploaded", 90)
    rejected = {"missing_identifier": 7, "outside_linkage_window": 3}
    record = None
    if upload_id is not None:
        record = {
            "id": upload_id,
            "status": over.pop("status", "PROCESSED"),
            "create_time": "2026-11-01T10:00:00Z",
            "source_quantity": uploaded,
            "line_quantity": uploaded,
            "linked_quantity": over.pop("linked", 60),
            "static_calls_quantity": 10,
            "dynamic_calls_quantity": uploaded - 10,
            "comment": f"calltouch-metrika web site {SITE_ID} {day}",
            "client_id_type": "CLIENT_ID",
        }
    row = linkage_row(
        LinkageUpload(
            pipeline="web",
            counter_id=COUNTER_ID,
            site_id=SITE_ID,
            day=day,
            day_to=day,
            dag_id="calltouch_calls_to_metrika__web",
            run_id=f"scheduled__{day}",
            counts={
                "extracted": uploaded + 10 if upload_id else 10,
                "uploaded": uploaded if upload_id else 0,
                "rejected": 10,
                "rejects_by_reason": rejected,
            },
            uploading=record,
        ),
        now=datetime(2026, 11, 1, 10, 5, tzinfo=UTC),
    )
    write_linkage(root, row)
    return row


@pytest.fixture
def report_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db) -> dict[str, Any]:
    pipeline = _write_config(tmp_path, monkeypatch, name="web")
    yesterday = datetime.now(ZoneInfo("Europe/Moscow")).date() - timedelta(days=1)
    days = [yesterday - timedelta(days=i) for i in (40, 2, 1)]
    _row(pipeline["storage_root"], days[0], 1)
    _row(pipeline["storage_root"], days[1], 2, linked=0, status="LINKAGE_FAILURE")
    _row(pipeline["storage_root"], days[2], None)
    return {"pipeline": pipeline, "days": days, "yesterday": yesterday}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "linkage-report-test-secret")
    purge_cached_app()
    app = create_app()
    with TestClient(app) as c:
        yield c


def _token() -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))


def test_page_and_data_endpoint_in_the_api_server_app(report_env: dict[str, Any], client: Any) -> None:
    days = report_env["days"]
    # no credentials: the data is refused, the (data-free) page and plotly.js are served
    assert client.get(f"{PREFIX}/api/linkage", params={"pipeline": "web"}).status_code == 401
    assert client.get(f"{PREFIX}/api/pipelines").status_code == 401
    page = client.get(f"{PREFIX}/linkage")
    assert page.status_code == 200 and '<script src="static/plotly.min.js">' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    js = client.get(f"{PREFIX}/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly" in js.content[:2000].lower()

    auth = {"Authorization": f"Bearer {_token()}"}
    assert client.get(f"{PREFIX}/api/pipelines", headers=auth).json() == [
        {
            "name": "web",
            "dag_id": "calltouch_calls_to_metrika__web",
            "site_id": SITE_ID,
            "counter_id": COUNTER_ID,
        }
    ]
    assert client.get(f"{PREFIX}/api/linkage", params={"pipeline": "nope"}, headers=auth).status_code == 404
    assert (
        client.get(f"{PREFIX}/api/linkage", params={"pipeline": "web", "days": 0}, headers=auth).status_code
        == 422
    )

    body = client.get(f"{PREFIX}/api/linkage", params={"pipeline": "web", "days": 30}, headers=auth).json()
    assert body["days"] == 30 and body["last"] == report_env["yesterday"].isoformat()
    assert [r["day"] for r in body["rows"]] == [days[1].isoformat(), days[2].isoformat()]  # day -41 is out
    failed, empty = body["rows"]
    assert (
        failed["status"] == "LINKAGE_FAILURE"
        and failed["linked_quantity"] == 0
        and failed["linked_share"] == 0
    )
    assert failed["rejected_by_reason"] == {"missing_identifier": 7, "outside_linkage_window": 3}
    assert failed["runs"] == [
        {"dag_id": "calltouch_calls_to_metrika__web", "run_id": f"scheduled__{days[1]}"}
    ]
    assert empty["uploads"] == 0 and empty["extracted"] == 10 and empty["status"] is None
    assert body["reasons"] == ["missing_identifier", "outside_linkage_window"]
    assert body["totals"]["extracted"] == 110 and body["totals"]["uploaded"] == 90

    body90 = client.get(f"{PREFIX}/api/linkage", params={"pipeline": "web", "days": 90}, headers=auth).json()
    assert [r["day"] for r in body90["rows"]] == [d.isoformat() for d in days]
    assert body90["totals"]["linked_quantity"] == 60 and body90["totals"]["line_quantity"] == 180

    # the navigation entry Airflow's UI reads
    plugins = client.get("/api/v2/plugins", headers=auth).json()["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "calltouch_metrika_linkage_report"]
    assert ours["external_views"][0]["href"] == "calltouch-metrika/linkage"
    assert ours["external_views"][0]["url_route"] == "linkage-report"


def test_cli_prints_a_plain_table(report_env: dict[str, Any]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    days = report_env["days"]
    out = subprocess.run(
        [sys.executable, "-m", "calltouch_metrika.report", "--pipeline", "web", "--days", "30"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    lines = out.splitlines()
    assert lines[0].startswith("Linkage report: pipeline web (site 10001 -> counter 20001)")
    assert lines[1].split()[:4] == ["day", "extracted", "uploaded", "rejected"]
    assert lines[2].split()[:9] == [days[2].isoformat(), "10", "0", "10", "-", "-", "-", "-", "-"]
    assert lines[3].split()[:9] == [
        days[1].isoformat(),
        "100",
        "90",
        "10",
        "LINKAGE_FAILURE",
        "90",
        "90",
        "0",
        "0%",
    ]
    assert "missing_identifier 7, outside_linkage_window 3" in lines[3]
    assert (
        lines[-1] == "total: 2 day(s), extracted 110, uploaded 90, rejected 20, linked 0 of 90 accepted (0%)"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "calltouch_metrika.report", "--pipeline", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "no pipeline named 'nope'" in bad.stderr
