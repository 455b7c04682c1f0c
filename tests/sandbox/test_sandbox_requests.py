"""Calltouch requests (leads) journal: seed 004's parameters and response shape."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests

pytestmark = pytest.mark.integration

BASE = {
    "clientApiId": "sandbox-ct-token",
    "siteId": "10001",
    "dateFrom": "11/20/2024",
    "dateTo": "11/20/2024",
}


def get(urls, **params):
    merged = {**BASE, **params}
    return requests.get(urls.requests, params={k: v for k, v in merged.items() if v is not None}, timeout=30)


def test_shape_without_flags(api, urls):
    r = get(urls)
    assert r.status_code == 200
    leads = r.json()
    assert isinstance(leads, list) and len(leads) == 40
    tz = ZoneInfo("Europe/Moscow")
    for lead in leads:
        assert isinstance(lead["date"], int) and lead["date"] > 10**12  # milliseconds
        assert lead["dateStr"] == datetime.fromtimestamp(lead["date"] // 1000, tz).strftime(
            "%d/%m/%Y %H:%M:%S"
        )
        assert lead["dateStr"].startswith("20/11/2024")
        for key in (
            "requestId",
            "requestNumber",
            "subject",
            "client",
            "orders",
            "comments",
            "session",
            "siteId",
            "uniqueRequest",
            "targetRequest",
            "uniqTargetRequest",
            "requestUrl",
            "manager",
            "ctClientId",
        ):
            assert key in lead
        for absent in (
            "RequestTags",
            "mapVisits",
            "yandexDirect",
            "googleAdWords",
            "widgetInfo",
            "customFields",
        ):
            assert absent not in lead
        assert lead["dcm"] is None
        if lead["session"] is not None:
            assert lead["session"]["attrs"] is None
        else:
            assert lead["ctClientId"] is None
        assert lead["siteId"] == 10001
    assert any(lead["session"] and lead["session"]["utmSource"] == "<не указано>" for lead in leads)
    assert any(lead["orders"] and lead["orders"][0]["sum"].endswith(".0000") for lead in leads)


def test_flags_add_blocks(api, urls):
    flags = dict.fromkeys(
        (
            "withRequestTags",
            "withMapVisits",
            "withYandexDirect",
            "withGoogleAdwords",
            "withAttrs",
            "withWidgetInfo",
            "withCustomFields",
            "withDcm",
        ),
        "true",
    )
    leads = get(urls, **flags).json()
    assert all(
        {"RequestTags", "mapVisits", "yandexDirect", "googleAdWords", "customFields"} <= set(x) for x in leads
    )
    assert any(x["RequestTags"] and x["RequestTags"][0]["type"] == "AUTO-CT" for x in leads)
    assert all(isinstance(x["dcm"], list) for x in leads)
    widgets = [x for x in leads if "widgetInfo" in x]
    assert widgets and all(x["subject"] == "Умная заявка" for x in widgets)
    assert any(x["session"] and x["session"]["attrs"] for x in leads)


def test_dates_are_month_first(api, urls):
    assert get(urls, dateFrom="20/11/2024", dateTo="20/11/2024").status_code == 400
    assert get(urls, dateFrom="11/21/2024", dateTo="11/20/2024").status_code == 400
    two_days = get(urls, dateFrom="11/19/2024").json()
    assert {x["dateStr"][:10] for x in two_days} == {"19/11/2024", "20/11/2024"}


def test_time_window(api, urls):
    leads = get(urls, timeFrom="12:00:00", timeTo="13:59:59").json()
    everything = get(urls).json()
    expected = [x["requestId"] for x in everything if "12:00:00" <= x["dateStr"][11:] <= "13:59:59"]
    assert [x["requestId"] for x in leads] == expected and expected
    assert get(urls, timeFrom="25:00:00").status_code == 400


def test_by_request_id_and_number_without_dates(api, urls):
    everything = get(urls).json()
    picked = everything[:3]
    ids = ",".join(str(x["requestId"]) for x in picked)
    by_id = get(urls, dateFrom=None, dateTo=None, requestId=ids).json()
    assert [x["requestId"] for x in by_id] == [x["requestId"] for x in picked]
    custom = next(x for x in everything if x["requestNumber"].startswith("web-"))
    by_number = get(urls, dateFrom=None, dateTo=None, requestNumber=custom["requestNumber"]).json()
    assert [x["requestId"] for x in by_number] == [custom["requestId"]]
    assert get(urls, dateFrom=None, dateTo=None, requestId="12,abc").status_code == 400


@pytest.mark.parametrize(
    ("param", "pick", "keep"),
    [
        ("subject", lambda x: x["subject"][:6], lambda x, v: x["subject"].startswith(v)),
        (
            "keywords",
            lambda x: x["session"] and x["session"]["keywords"][2:6],
            lambda x, v: x["session"] is not None and v in x["session"]["keywords"],
        ),
        (
            "city",
            lambda x: x["session"] and x["session"]["city"],
            lambda x, v: x["session"] is not None and x["session"]["city"] == v,
        ),
        (
            "source",
            lambda x: x["session"] and x["session"]["source"],
            lambda x, v: x["session"] is not None and x["session"]["source"] == v,
        ),
        (
            "medium",
            lambda x: x["session"] and x["session"]["medium"],
            lambda x, v: x["session"] is not None and x["session"]["medium"] == v,
        ),
        ("manager", lambda x: x["manager"], lambda x, v: x["manager"] == v),
    ],
)
def test_text_filters(api, urls, param, pick, keep):
    everything = get(urls).json()
    value = next(v for v in map(pick, everything) if v)
    expected = [x["requestId"] for x in everything if keep(x, value)]
    got = [x["requestId"] for x in get(urls, **{param: value}).json()]
    assert got == expected and got


@pytest.mark.parametrize("mode", ["exact", "startwith", "contains"])
def test_ani_and_email_filter_modes(api, urls, mode):
    everything = get(urls).json()
    phone = everything[0]["client"]["phones"][0]["phoneNumber"]
    value = {"exact": phone, "startwith": phone[:4], "contains": phone[3:8]}[mode]
    got = {x["requestId"] for x in get(urls, **{"ani.value": value, "ani.filterMode": mode}).json()}
    assert everything[0]["requestId"] in got
    email_lead = next(x for x in everything if x["client"]["contacts"])
    email = email_lead["client"]["contacts"][0]["contactValue"]
    value = {"exact": email, "startwith": email[:5], "contains": email[2:7]}[mode]
    got = {x["requestId"] for x in get(urls, **{"email.value": value, "email.filterMode": mode}).json()}
    assert email_lead["requestId"] in got
    assert get(urls, **{"ani.value": "7", "ani.filterMode": "regex"}).status_code == 400


def test_bind_to_session_and_attribution(api, urls):
    by_session = get(urls, bindTo="session", withMapVisits="true").json()
    assert by_session and all(x["session"] is not None for x in by_session)
    assert get(urls, bindTo="call").status_code == 400
    leads = get(urls, attribution="0").json()
    assert all(x["session"]["attribution"] == 0 for x in leads if x["session"])


def test_sites_and_auth(api, urls):
    both = get(urls, siteId=None).json()
    assert {x["siteId"] for x in both} == {10001, 10002}
    assert get(urls, siteId="10003").status_code == 403
    assert get(urls, clientApiId="nope").status_code == 403


def test_same_seed_same_bytes(api, urls):
    first = get(urls, withMapVisits="true").content
    api.reset(calltouch_rps=1000)
    assert get(urls, withMapVisits="true").content == first
