"""Calls accounting and the linkage threshold (issue 12 §4/§6; api-notes §3.3).

``GET …/calls_visit_join_threshold`` answers ``{"date": …}``, the earliest time a call can be linked to a
visit: ``max(now - 21 days, enabled_at + 1 day)`` (sandbox/README.md, "Calls accounting"). Switched off:
``400 invalid_parameter``. ``POST``/``DELETE …/calls_extended_threshold`` switch it on/off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
KNOWN = "1727978509569360306"


def _threshold(urls, oauth, counter: int = 20001) -> requests.Response:
    return requests.get(urls.metrika("calls_visit_join_threshold", counter), headers=oauth, timeout=30)


def _date(r: requests.Response) -> datetime:
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"date"}
    return datetime.fromisoformat(r.json()["date"])


@pytest.fixture
def frozen(api):
    api.reset(metrika_rps=1000, metrika_parallel=100, now=NOW.isoformat(), status_step_seconds=0)
    return api


def test_default_counter_enabled_long_ago(frozen, urls, oauth):
    assert _date(_threshold(urls, oauth)) == NOW - timedelta(days=21)


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [
        (0, NOW + timedelta(days=1)),  # just switched on: nothing links before about a day
        (0.5, NOW + timedelta(days=0.5)),
        (3, NOW - timedelta(days=2)),  # the window grows a day a day
        (21, NOW - timedelta(days=20)),
        (22, NOW - timedelta(days=21)),
        (400, NOW - timedelta(days=21)),  # capped at 21 days
    ],
)
def test_threshold_grows_after_enabling(frozen, urls, oauth, days_ago, expected):
    frozen.configure(calls_accounting={"20001": {"enabled_days_ago": days_ago}})
    assert _date(_threshold(urls, oauth)) == expected
    assert _date(_threshold(urls, oauth, 20002)) == NOW - timedelta(days=21)  # per counter


def test_switched_off_is_an_error(frozen, urls, oauth):
    frozen.configure(calls_accounting={"20001": {"enabled": False}})
    r = _threshold(urls, oauth)
    assert r.status_code == 400
    body = r.json()
    assert body["errors"][0]["error_type"] == "invalid_parameter" and "switched off" in body["message"]


def test_extended_threshold_switches_accounting(frozen, urls, oauth):
    url = urls.metrika("calls_extended_threshold")
    off = requests.delete(url, headers=oauth, timeout=30)
    assert off.status_code == 200 and off.json() == {"success": True}
    assert _threshold(urls, oauth).status_code == 400
    on = requests.post(url, headers=oauth, timeout=30)
    assert on.status_code == 200 and on.json() == {"success": True}
    assert _date(_threshold(urls, oauth)) == NOW + timedelta(days=1)  # grows from now
    frozen.configure(now=(NOW + timedelta(days=5)).isoformat())
    assert requests.post(url, headers=oauth, timeout=30).json() == {"success": True}  # already on: kept
    assert _date(_threshold(urls, oauth)) == NOW + timedelta(days=1)
    assert (
        requests.post(urls.metrika("calls_extended_threshold", 99999), headers=oauth, timeout=30).status_code
        == 403
    )


def _upload(urls, oauth, rows: list[int]) -> dict:
    text = "ClientId,DateTime\n" + "".join(f"{KNOWN},{ts}\n" for ts in rows)
    r = requests.post(
        urls.metrika("upload_calls"), headers=oauth, files={"file": ("calls.csv", text.encode())}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["uploading"]


def test_calls_before_the_threshold_do_not_link(frozen, urls, oauth):
    frozen.configure(calls_accounting={"20001": {"enabled_days_ago": 3}})
    threshold = int((NOW - timedelta(days=2)).timestamp())
    up = _upload(urls, oauth, [threshold - 60, threshold - 1, threshold, threshold + 3600])
    assert up["line_quantity"] == 4 and up["linked_quantity"] == 2 and up["status"] == "PROCESSED"
    before = _upload(urls, oauth, [threshold - 60])
    assert before["linked_quantity"] == 0 and before["status"] == "LINKAGE_FAILURE"
    frozen.configure(calls_accounting={"20001": {"enabled": False}})
    assert _upload(urls, oauth, [threshold + 60])["status"] == "LINKAGE_FAILURE"


def test_default_counters_link_known_calls_of_any_age(frozen, urls, oauth):
    """Without an explicit ``calls_accounting`` entry the threshold is reported but not enforced on links,
    so fixtures with fixed past dates keep reaching PROCESSED (sandbox/README.md)."""
    old = int((NOW - timedelta(days=400)).timestamp())
    assert _upload(urls, oauth, [old])["linked_quantity"] == 1
