"""Calltouch calls diary as served by the sandbox, over real HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_bare_array_for_one_day_and_record_fields(api, urls, ct_params):
    r = requests.get(urls.calls(), params=ct_params, timeout=30)
    assert r.status_code == 200
    calls = r.json()
    assert isinstance(calls, list) and len(calls) == 150
    tz = ZoneInfo("Europe/Moscow")
    for call in calls:
        # `date` is dd/mm/yyyy HH:MM:SS in the site's timezone and matches `timestamp` (unix seconds).
        local = datetime.fromtimestamp(call["timestamp"], tz).strftime("%d/%m/%Y %H:%M:%S")
        assert call["date"] == local
        assert call["date"].startswith("20/11/2024 ")
        assert isinstance(call["waitingConnect"], int) and "waitingConnection" not in call
        assert call["uniqTargetCall"] == (call["uniqueCall"] and call["targetCall"])
        assert call["siteId"] == 10001
        assert not any(k.startswith("_") for k in call)
        for block in ("callTags", "comments", "orders", "mapVisits", "yandexDirect"):
            assert block not in call
    ya = [c["yaClientId"] for c in calls]
    missing = sum(v is None for v in ya) / len(ya)
    assert 0.15 < missing < 0.45
    assert all(re.fullmatch(r"\d{19}", v) for v in ya if v is not None)
    static = [c for c in calls if c["sessionId"] is None]
    assert static and all(c["ctClientId"] is None and c["yaClientId"] is None for c in static)
    assert any(not c["successful"] and c["duration"] == 0 for c in calls)
    assert any(c["utmSource"] == "<не указано>" for c in calls)
    assert any(re.search("[а-яА-Я]", c["city"]) for c in calls)
    shapes = {c["callerNumber"][:2] for c in calls}
    assert {"79", "89", "+7"} <= shapes


def test_flags_add_blocks(api, urls, ct_params):
    flags = {
        "withCallTags": "true",
        "withComments": "true",
        "withOrders": "true",
        "withMapVisits": "true",
        "withYandexDirect": "true",
    }
    calls = requests.get(urls.calls(), params={**ct_params, **flags}, timeout=30).json()
    assert all({"callTags", "comments", "orders", "mapVisits", "yandexDirect"} <= set(c) for c in calls)
    assert any(c["callTags"] and c["callTags"][0]["names"] for c in calls)
    orders = [o for c in calls for o in c["orders"]]
    assert orders and all(o["plannedAmount"] > 0 for o in orders)
    assert any(c["yandexDirect"] is not None for c in calls)
    # A comment ending in "\n" exists somewhere in the generated data (seed 004's warning).
    week = requests.get(
        urls.calls(),
        params={**ct_params, "dateFrom": "14/11/2024", "page": 1, "limit": 1000, "withComments": "true"},
        timeout=30,
    ).json()
    assert any(cm["comment"].endswith("\n") for c in week["records"] for cm in c["comments"])


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("uniqueOnly", "uniqueCall"),
        ("targetOnly", "targetCall"),
        ("uniqTargetOnly", "uniqTargetCall"),
        ("callbackOnly", "callbackCall"),
    ],
)
def test_filters_filter(api, urls, ct_params, flag, field):
    everything = requests.get(urls.calls(), params=ct_params, timeout=30).json()
    only = requests.get(urls.calls(), params={**ct_params, flag: "true"}, timeout=30).json()
    expected = [c["callId"] for c in everything if c[field]]
    assert [c["callId"] for c in only] == expected
    assert 0 < len(expected) < len(everything)


@pytest.mark.parametrize(
    ("volume", "limit", "pages"), [(0, 1000, 0), (1000, 1000, 1), (1001, 1000, 2), (7, 3, 3)]
)
def test_pagination_edges(api, urls, ct_params, volume, limit, pages):
    api.reset(calltouch_rps=1000, volume_overrides={"10001:2024-11-20": volume})
    seen = []
    page = 1
    while True:
        body = requests.get(
            urls.calls(), params={**ct_params, "page": page, "limit": limit}, timeout=30
        ).json()
        assert set(body) == {"page", "pageTotal", "pageSize", "recordsTotal", "records"}
        assert body["page"] == page and body["pageSize"] == limit
        assert body["pageTotal"] == pages and body["recordsTotal"] == volume
        seen += [c["callId"] for c in body["records"]]
        if page >= max(body["pageTotal"], 1):
            break
        page += 1
    assert len(seen) == len(set(seen)) == volume
    beyond = requests.get(
        urls.calls(), params={**ct_params, "page": pages + 1, "limit": limit}, timeout=30
    ).json()
    assert beyond["records"] == []


def test_multi_day_range_needs_pagination(api, urls, ct_params):
    params = {**ct_params, "dateFrom": "18/11/2024"}
    r = requests.get(urls.calls(), params=params, timeout=30)
    assert r.status_code == 400 and "message" in r.json()
    body = requests.get(urls.calls(), params={**params, "page": 1, "limit": 1000}, timeout=30).json()
    assert body["recordsTotal"] == 450
    days = {c["date"][:10] for c in body["records"]}
    assert days == {"18/11/2024", "19/11/2024", "20/11/2024"}


@pytest.mark.parametrize(
    "change",
    [
        {"dateFrom": "2024-11-20"},
        {"dateTo": "11/20/2024"},
        {"dateFrom": "21/11/2024", "page": "1", "limit": "10"},
        {"limit": "1001", "page": "1"},
        {"limit": "0", "page": "1"},
        {"page": "0", "limit": "10"},
        {"attribution": "2"},
        {"bindTo": "visit"},
        {"targetOnly": "maybe"},
        {"dateFrom": None},
    ],
)
def test_bad_parameters_are_400(api, urls, ct_params, change):
    params = {**ct_params, **change}
    params = {k: v for k, v in params.items() if v is not None}
    r = requests.get(urls.calls(), params=params, timeout=30)
    assert r.status_code == 400
    assert isinstance(r.json()["message"], str)


@pytest.mark.parametrize(
    ("site", "token"), [(10001, "wrong-token"), (10003, "sandbox-ct-token"), (10001, None)]
)
def test_auth_failures_are_403(api, urls, ct_params, site, token):
    params = {**ct_params, "clientApiId": token}
    r = requests.get(urls.calls(site), params={k: v for k, v in params.items() if v}, timeout=30)
    assert r.status_code == 403
    assert r.json() == {"message": "Доступ запрещён: неверный clientApiId или нет доступа к сайту"}
    assert "wrong-token" not in r.text


def test_attribution_and_bind_to(api, urls, ct_params):
    last_indirect = requests.get(urls.calls(), params={**ct_params, "attribution": 1}, timeout=30).json()
    last_click = requests.get(urls.calls(), params={**ct_params, "attribution": 0}, timeout=30).json()
    assert all(c["attribution"] == 1 for c in last_indirect)
    assert all(c["attribution"] == 0 for c in last_click)
    changed = [a for a, b in zip(last_indirect, last_click, strict=True) if a["source"] != b["source"]]
    assert changed and all(
        b["source"] == "(direct)" for b in last_click if b["callId"] in {c["callId"] for c in changed}
    )
    by_session = requests.get(
        urls.calls(), params={**ct_params, "bindTo": "session", "page": 1, "limit": 1000}, timeout=30
    ).json()["records"]
    assert by_session and all(c["sessionDate"].startswith("20/11/2024") for c in by_session)
    assert any(not c["date"].startswith("20/11/2024") for c in by_session)  # calls on later days


def test_future_days_are_empty(api, urls, ct_params):
    api.reset(calltouch_rps=1000, now="2024-11-20T09:00:00+03:00")
    calls = requests.get(urls.calls(), params=ct_params, timeout=30).json()
    assert calls and all(c["timestamp"] <= datetime(2024, 11, 20, 6, tzinfo=UTC).timestamp() for c in calls)
    tomorrow = requests.get(
        urls.calls(), params={**ct_params, "dateFrom": "21/11/2024", "dateTo": "21/11/2024"}, timeout=30
    ).json()
    assert tomorrow == []


def test_same_seed_same_bytes(api, urls, ct_params):
    params = {**ct_params, "withCallTags": "true", "withOrders": "true", "page": 1, "limit": 1000}
    first = requests.get(urls.calls(), params=params, timeout=30).content
    api.reset(calltouch_rps=1000)
    assert requests.get(urls.calls(), params=params, timeout=30).content == first
    api.reset(calltouch_rps=1000, seed=7)
    assert requests.get(urls.calls(), params=params, timeout=30).content != first


def test_same_seed_same_bytes_across_processes(api, urls, ct_params, tmp_path):
    """A second sandbox process, started independently, serves the very same bytes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        other = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{other}/_sandbox/health", timeout=1).ok:
                    break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            time.sleep(0.1)
        params = {**ct_params, "withMapVisits": "true", "withComments": "true"}
        mine = requests.get(urls.calls(), params=params, timeout=30).content
        theirs = requests.get(
            f"{other}/calls-service/RestAPI/10001/calls-diary/calls", params=params, timeout=30
        )
        assert theirs.content == mine
    finally:
        proc.terminate()
        proc.wait(10)


def test_hundred_thousand_calls_a_day(api, urls, ct_params):
    api.reset(calltouch_rps=1000, volume_overrides={"10001:2024-11-20": 100_000})
    body = requests.get(urls.calls(), params={**ct_params, "page": 100, "limit": 1000}, timeout=60).json()
    assert body["recordsTotal"] == 100_000 and body["pageTotal"] == 100 and len(body["records"]) == 1000
