"""Long ranges (issue 16 item 6): a page's cost does not grow with the range, filtered or session-bound too.

The cost is measured functionally, not by the clock: ``GET /_sandbox/state`` counts the days the sandbox
generated (``calls_cache.days_generated``), and a first page of a 30-year range must generate no more days
than the same query over one day, plus the days the page's calls come from, plus the few edge days of a
``bindTo=session`` range. On main (before) such a page generated every day of the range (about 11,000 here).
Paging a filtered range must give exactly ``recordsTotal`` calls, each matching the filter, and the same calls
as the plain reference path (:func:`sandbox.calltouch.select_calls`, generation then filtering).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from sandbox.calltouch import select_calls
from sandbox.generators import generate_requests
from sandbox.state import SandboxState
from tests.sandbox.conftest import CT_TOKEN

pytestmark = pytest.mark.integration

SITE = 10001
NOW = "2026-11-30T12:00:00+03:00"
#: the edge days of a session-bound range that are generated to count them: its first 5 days (some sessions
#: start before the range) and the 4 days after ``dateTo`` (some of their sessions start inside it)
SESSION_EDGE_DAYS = 5 + 4


def _generated(api: Any) -> int:
    return api.state()["calls_cache"]["days_generated"]


def _page(urls: Any, params: dict[str, str], page: int) -> dict[str, Any]:
    r = requests.get(urls.calls(SITE), params={**params, "page": str(page)}, timeout=120)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def _call_days(records: list[dict[str, Any]]) -> set[str]:
    return {c["date"][:10] for c in records}


@pytest.mark.parametrize(
    "query",
    [
        {"utmMedium": "cpc", "targetOnly": "true"},
        {"bindTo": "session"},
        {"bindTo": "session", "utmMedium": "cpc", "targetOnly": "true", "attribution": "0"},
        {"utmSource.value": "ya", "utmSource.filterMode": "startwith", "uniqueOnly": "true"},
    ],
    ids=["utm_medium+target_only", "bind_to_session", "session+filters", "source_filter_mode"],
)
def test_first_page_of_30_years_generates_only_the_days_it_touches(api, urls, query):
    base = {"clientApiId": CT_TOKEN, "limit": "100", **query}
    # one day, measured in the same test
    api.reset(calltouch_rps=1000, seed="30-years", now=NOW)
    before = _generated(api)
    one_day = _page(urls, {**base, "dateFrom": "02/01/1996", "dateTo": "02/01/1996"}, 1)
    one_day_cost = _generated(api) - before
    assert one_day["recordsTotal"] > 0
    # the same query over 30 years, from a fresh cache
    api.reset(calltouch_rps=1000, seed="30-years", now=NOW)
    params = {**base, "dateFrom": "01/01/1996", "dateTo": "31/12/2025"}
    before = _generated(api)
    first = _page(urls, params, 1)
    cost = _generated(api) - before
    touched = len(_call_days(first["records"]))
    edges = SESSION_EDGE_DAYS if query.get("bindTo") == "session" else 0
    assert cost <= one_day_cost + touched + edges, (cost, one_day_cost, touched)
    assert len(first["records"]) == 100 and first["recordsTotal"] > 10_950 * 10
    assert first["pageTotal"] == (first["recordsTotal"] + 99) // 100
    # the last page holds exactly the rest, and it costs the days it touches too
    before = _generated(api)
    last = _page(urls, params, first["pageTotal"])
    assert last["recordsTotal"] == first["recordsTotal"]
    assert len(last["records"]) == first["recordsTotal"] - 100 * (first["pageTotal"] - 1)
    assert _generated(api) - before <= len(_call_days(last["records"])) + edges + 1
    assert not _page(urls, params, first["pageTotal"] + 1)["records"]


def _dmy(day: date) -> str:
    return day.strftime("%d/%m/%Y")


FLAGS = {"targetOnly": "targetCall", "uniqueOnly": "uniqueCall", "callbackOnly": "callbackCall"}


def _matches(call: dict[str, Any], query: dict[str, str]) -> bool:
    """The filters of :data:`PAGED`, checked on a call as served."""
    for flag, field in FLAGS.items():
        if query.get(flag) == "true" and not call[field]:
            return False
    if "utmMedium" in query and call["utmMedium"] != query["utmMedium"]:
        return False
    if "utmSource.value" in query and not call["utmSource"].startswith(query["utmSource.value"]):
        return False
    return "medium.value" not in query or query["medium.value"] in call["medium"]


#: (timezone, dateFrom, dateTo, query): call- and session-bound, up to "today" (a partial day) or ending before
#: it (so the days after dateTo are generated), across a DST change (Europe/London, 25/10/2026).
PAGED: list[tuple[str, date, date, dict[str, str]]] = [
    ("Europe/Moscow", date(2026, 11, 12), date(2026, 11, 30), {"utmMedium": "cpc", "targetOnly": "true"}),
    ("Europe/Moscow", date(2026, 11, 1), date(2026, 11, 20), {"bindTo": "session"}),
    (
        "Europe/London",
        date(2026, 10, 14),
        date(2026, 11, 2),
        {
            "bindTo": "session",
            "utmSource.value": "ya",
            "utmSource.filterMode": "startwith",
            "attribution": "0",
        },
    ),
    (
        "Europe/London",
        date(2026, 10, 20),
        date(2026, 11, 30),
        {"medium.value": "o", "medium.filterMode": "contains", "uniqueOnly": "true", "callbackOnly": "true"},
    ),
]


@pytest.mark.parametrize(
    ("tz", "date_from", "date_to", "query"), PAGED, ids=["target", "session", "dst", "modes"]
)
def test_paging_a_filtered_range_returns_exactly_records_total(api, urls, tz, date_from, date_to, query):
    config = {"calltouch_rps": 1000, "seed": "paging", "now": NOW, "site_timezone": tz}
    api.reset(**config)
    params = {
        "clientApiId": CT_TOKEN,
        "dateFrom": _dmy(date_from),
        "dateTo": _dmy(date_to),
        "limit": "97",
        **query,
    }
    first = _page(urls, params, 1)
    pages = [first] + [_page(urls, params, p) for p in range(2, first["pageTotal"] + 1)]
    calls = [c for p in pages for c in p["records"]]
    assert all(p["recordsTotal"] == first["recordsTotal"] for p in pages)
    assert len(calls) == first["recordsTotal"] > 0
    assert len({c["callId"] for c in calls}) == len(calls)
    assert all(_matches(c, query) for c in calls)
    # the same calls as the reference path, in the same order
    matches = []
    for key, value in query.items():
        if key.endswith(".value"):
            name = key.removesuffix(".value")
            matches.append((name, value, query.get(f"{name}.filterMode", "exact")))
        elif key == "utmMedium":
            matches.append((key, value, "exact"))
    flags = [field for flag, field in FLAGS.items() if flag in query]
    attribution = int(query["attribution"]) if "attribution" in query else None
    reference = select_calls(
        SandboxState(config),
        SITE,
        date_from,
        date_to,
        query.get("bindTo", "call"),
        flags,
        tuple(matches),
        attribution,
    )
    assert [c["callId"] for c in calls] == [r["callId"] for r in reference]
    if query.get("bindTo") == "session":  # sessions start up to 3 days before their call: later calls count
        call_days = {date(int(c["date"][6:10]), int(c["date"][3:5]), int(c["date"][:2])) for c in calls}
        assert max(call_days) > date_to


# ------------------------------------------------------------------------------------------- requests journal


def _journal(urls: Any, **params: str) -> list[dict[str, Any]]:
    r = requests.get(urls.requests, params={"clientApiId": CT_TOKEN, **params}, timeout=120)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def test_filtered_journal_over_30_years_generates_only_the_requests_it_returns(api, urls):
    """Unpaginated, the journal costs what it returns: a filtered 30-year answer generates no other request."""
    api.reset(calltouch_rps=1000, seed="30-years", now=NOW)
    before = api.state()["requests_journal"]["requests_generated"]
    found = _journal(
        urls,
        siteId=str(SITE),
        dateFrom="01/01/1996",
        dateTo="12/31/2025",
        city="Казань",
        manager="Петров Сергей",
        subject="Заказ",
    )
    generated = api.state()["requests_journal"]["requests_generated"] - before
    assert 100 < len(found) == generated  # about 40 * 10,958 / 15 / 5 / 6 ≈ 970
    assert all(r["session"]["city"] == "Казань" and r["manager"] == "Петров Сергей" for r in found)
    assert all(r["subject"].startswith("Заказ") and r["siteId"] == SITE for r in found)


#: every filter on the request's own attributes, with session binding and a time window
JOURNAL: list[dict[str, str]] = [
    {"city": "Москва", "source": "yandex", "keywords": "диван"},
    {"medium": "organic", "bindTo": "session", "timeFrom": "09:30:00", "timeTo": "18:00:00"},
    {"subject": "Умная", "manager": "Сидорова Мария", "ani.value": "79", "ani.filterMode": "startwith"},
]


@pytest.mark.parametrize("query", JOURNAL, ids=["session-fields", "session-binding", "subject-manager-ani"])
def test_filtered_journal_returns_what_full_generation_and_filtering_give(api, urls, query):
    config = {"calltouch_rps": 1000, "seed": "journal", "now": NOW, "requests_per_day": 60}
    api.reset(**config)
    date_from, date_to = date(2026, 9, 20), date(2026, 11, 30)
    found = _journal(
        urls, dateFrom=date_from.strftime("%m/%d/%Y"), dateTo=date_to.strftime("%m/%d/%Y"), **query
    )
    # the reference: every request of both sites generated whole, then the journal's documented filters
    state = SandboxState(config)
    tz = ZoneInfo(state.config.site_timezone)
    today = date(2026, 11, 30)
    now_ts = int(datetime.fromisoformat(NOW).timestamp())
    session = query.get("bindTo") == "session"
    t_from, t_to = (
        [int(x) for x in query.get(k, d).split(":")]
        for k, d in (("timeFrom", "00:00:00"), ("timeTo", "23:59:59"))
    )
    lo = int(datetime.combine(date_from, time(*t_from), tz).timestamp())
    hi = int(datetime.combine(date_to, time(*t_to), tz).timestamp())
    expected = []
    for site in (10001, 10002):
        day = date_from
        while day <= min(date_to + timedelta(days=4 if session else 0), today):
            for r in generate_requests("journal", site, day, 60, "Europe/Moscow"):
                key_ts = r["_session_ts"] if session else r["_ts"]
                if r["_ts"] > now_ts or key_ts is None or not lo <= key_ts <= hi:
                    continue
                s = r["session"]
                if any(
                    name in query and not (s and s[name] == query[name])
                    for name in ("city", "source", "medium")
                ):
                    continue
                if "keywords" in query and not (s and query["keywords"] in s["keywords"]):
                    continue
                if "subject" in query and not r["subject"].startswith(query["subject"]):
                    continue
                if "manager" in query and r["manager"] != query["manager"]:
                    continue
                if "ani.value" in query and not any(
                    p["phoneNumber"].startswith(query["ani.value"]) for p in r["client"]["phones"]
                ):
                    continue
                expected.append(r["requestId"])
            day += timedelta(days=1)
    assert [r["requestId"] for r in found] == expected and expected
