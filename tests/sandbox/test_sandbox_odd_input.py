"""Odd input never gets a 500 or a non-API answer (issue 16, tester's finding 11).

Out-of-range dates, odd ids (``²``, 5000 digits), a lowercase ``oauth`` scheme, UTF-16 uploads, and the guard:
any unhandled exception in a route is answered 500 in that API's error shape, logged, never plain text.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.sandbox.conftest import CT_TOKEN, YM_TOKEN

pytestmark = pytest.mark.integration

CSV = "ClientId,DateTime\n1727978509569360306,1732066244\n"
HUGE = "9" * 5000


def _calltouch_400(r: requests.Response) -> str:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["message"]


def _metrika_error(r: requests.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == status and body["errors"], body
    return body["errors"][0]


# ------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize("day", ["01/01/0001", "31/12/9999", "31/12/1969", "01/01/9999"])
@pytest.mark.parametrize(
    "extra",
    [{}, {"page": "1", "limit": "10"}, {"page": "1", "limit": "10", "bindTo": "session"}],
    ids=["one-day", "paged", "session"],
)
def test_calls_date_out_of_range_is_400(api, urls, day, extra):
    """``dateFrom``/``dateTo`` outside 01/01/1970..31/12/9998: the calls-service 400, not a plain 500."""
    for params in (
        {"dateFrom": day, "dateTo": day},
        {"dateFrom": "01/01/0001", "dateTo": day},
        {"dateFrom": day, "dateTo": "31/12/9999"},
    ):
        r = requests.get(urls.calls(), params={"clientApiId": CT_TOKEN, **params, **extra}, timeout=30)
        assert "вне допустимого диапазона дат" in _calltouch_400(r)


@pytest.mark.parametrize("day", ["01/01/1970", "31/12/9998"])
def test_calls_range_bounds_are_served(api, urls, day):
    """The bounds themselves are served (a far-future day simply has no calls yet)."""
    r = requests.get(
        urls.calls(),
        params={
            "clientApiId": CT_TOKEN,
            "dateFrom": day,
            "dateTo": day,
            "page": "1",
            "limit": "5",
            "bindTo": "session",
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json()["page"] == 1


@pytest.mark.parametrize("day", ["01/01/0001", "12/31/9999", "12/31/1969"])
@pytest.mark.parametrize("bind_to", ["request", "session"])
def test_requests_date_out_of_range_is_400(api, urls, day, bind_to):
    """The requests journal (``mm/dd/yyyy``) the same, its message giving the range in its own order."""
    for params in ({"dateFrom": day, "dateTo": day}, {"dateFrom": "01/01/0001", "dateTo": day}):
        r = requests.get(
            urls.requests, params={"clientApiId": CT_TOKEN, "bindTo": bind_to, **params}, timeout=30
        )
        assert "01/01/1970 - 12/31/9998" in _calltouch_400(r)


def test_unicode_digits_are_not_a_date(api, urls):
    """Arabic-Indic digits matched ``\\d``: only ASCII digits make a date."""
    r = requests.get(
        urls.calls(),
        params={"clientApiId": CT_TOKEN, "dateFrom": "٢٠/١١/٢٠٢٤", "dateTo": "20/11/2024"},
        timeout=30,
    )
    assert "dd/mm/yyyy" in _calltouch_400(r)


def test_plans_take_any_calendar_date(api, urls, plans_headers):
    """Plans only store their dates: 01-01-0001 and 31-12-9999 are valid dates (seed 001), no 500."""
    item = {
        "source": "yandex",
        "dateFrom": "01-01-0001",
        "dateTo": "31-12-9999",
        "metric": {"type": "Goal", "name": "Заявка", "value": 1},
    }
    r = requests.post(urls.plans("add"), headers=plans_headers, json={"items": [item]}, timeout=30)
    assert r.status_code in (200, 400), r.text[:300]
    assert r.headers["content-type"].startswith("application/json")


# ------------------------------------------------------------------------------------------- odd ids


@pytest.mark.parametrize("odd", ["²", "١", HUGE, "-1", "1e3"])
def test_odd_ids_answer_in_the_api_shape(api, urls, oauth, plans_headers, odd):
    """``str.isdigit`` took "²" (and ``int`` refuses 5000 digits): every id in a path, header or query is
    read without raising, and an odd one is "no such thing" in the API's own shape."""
    r = requests.get(
        urls.calls(site=odd),  # type: ignore[arg-type]
        params={"clientApiId": CT_TOKEN, "dateFrom": "20/11/2024", "dateTo": "20/11/2024"},
        timeout=30,
    )
    assert r.status_code in (403, 404) and "message" in r.json(), r.text[:200]
    r = requests.get(
        urls.requests,
        params={"clientApiId": CT_TOKEN, "siteId": odd, "dateFrom": "11/20/2024", "dateTo": "11/20/2024"},
        timeout=30,
    )
    assert r.status_code == 403 and "message" in r.json(), r.text[:200]
    r = requests.get(urls.requests, params={"clientApiId": CT_TOKEN, "requestId": odd}, timeout=30)
    assert "requestId" in _calltouch_400(r)
    r = requests.get(urls.requests, params={"clientApiId": CT_TOKEN, "requestNumber": odd}, timeout=30)
    assert r.status_code == 200 and r.json() == [], r.text[:200]
    site_header = odd.encode() if not odd.isascii() else odd  # a header is bytes (UTF-8 sent raw)
    r = requests.post(
        urls.plans("add"), headers={**plans_headers, "SiteId": site_header}, json={"items": []}, timeout=30
    )
    assert r.status_code == 403 and "message" in r.json(), r.text[:200]
    r = requests.get(urls.plans(f"{odd}/status"), headers=plans_headers, timeout=30)
    assert r.status_code == 404 and r.json()["data"]["type"] == "apiError", r.text[:200]
    base = urls.metrika("calls_uploadings").rsplit("/counter/", 1)[0]
    r = requests.get(f"{base}/counter/{odd}/offline_conversions/calls_uploadings", headers=oauth, timeout=30)
    assert _metrika_error(r, 400)["location"] == "counterId"
    r = requests.get(urls.metrika(f"calls_uploading/{odd}"), headers=oauth, timeout=30)
    assert _metrika_error(r, 404)["error_type"] == "not_found"


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", ["", "-1", "²", HUGE, "1.5"])
def test_uploadings_paging_odd_values(api, urls, oauth, name, value):
    """``limit``/``offset`` that are not non-negative integers: 400 ``invalid_parameter`` naming the parameter."""
    r = requests.get(urls.metrika("calls_uploadings"), headers=oauth, params={name: value}, timeout=30)
    assert _metrika_error(r, 400)["location"] == name


# ------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("scheme", ["OAuth", "oauth", "OAUTH", "oAuth", "Bearer", "bearer"])
def test_authorization_scheme_is_case_insensitive(api, urls, scheme):
    """RFC 7235 §2.1: the scheme is case-insensitive (Metrika documents ``OAuth``; ``Bearer`` is the sandbox's
    choice, sandbox/README.md); the token counts against its daily quota whatever the case."""
    r = requests.get(
        urls.metrika("calls_uploadings"), headers={"Authorization": f"{scheme} {YM_TOKEN}"}, timeout=30
    )
    assert r.status_code == 200, r.text[:200]
    assert api.state()["metrika_quota"]["used"] == {YM_TOKEN: 1}


@pytest.mark.parametrize("header", ["Basic abc", "OAuth", "oauth   ", YM_TOKEN])
def test_no_usable_token_is_401(api, urls, header):
    """Another scheme, or a scheme without a token: 401 ``unauthorized``."""
    r = requests.get(urls.metrika("calls_uploadings"), headers={"Authorization": header}, timeout=30)
    assert _metrika_error(r, 401)["error_type"] == "unauthorized"


# ------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("encoding", "named"),
    [("utf-16", "UTF-16"), ("utf-32", "UTF-32"), ("utf-16-le", "NUL bytes"), ("utf-16-be", "NUL bytes")],
)
def test_utf16_upload_is_a_clean_encoding_error(api, urls, oauth, encoding, named):
    """A UTF-16/32 file: Metrika's 400 saying it is not UTF-8, with no NUL byte anywhere in the answer."""
    r = requests.post(
        urls.metrika("upload_calls"),
        headers=oauth,
        files={"file": ("c.csv", CSV.encode(encoding))},
        timeout=30,
    )
    err = _metrika_error(r, 400)
    assert err["error_type"] == "invalid_parameter"
    assert "not valid UTF-8" in err["message"] and named in err["message"]
    assert err["location"] in ("file", "line 1")
    assert b"\x00" not in r.content and b"\\u0000" not in r.content
    assert api.state()["uploads"] == []


def test_cp1251_upload_names_a_clean_location(api, urls, oauth):
    """A Windows-1251 value: the line and column are named; a header that is not UTF-8 names no column."""
    data = "ClientId,DateTime,Tag\n1727978509569360306,1732066244,Звонок\n".encode("cp1251")
    err = _metrika_error(
        requests.post(
            urls.metrika("upload_calls"), headers=oauth, files={"file": ("c.csv", data)}, timeout=30
        ),
        400,
    )
    assert err["location"] == "line 2, column Tag"
    data = "ClientId,DateTime,Тег\n1,2,3\n".encode("cp1251")
    err = _metrika_error(
        requests.post(
            urls.metrika("upload_calls"), headers=oauth, files={"file": ("c.csv", data)}, timeout=30
        ),
        400,
    )
    assert err["location"] == "line 1"


def test_control_characters_in_a_column_name_are_escaped(api, urls, oauth):
    """An unknown column named with control characters: the location shows them escaped, not raw."""
    data = b"ClientId,DateTime,X\x01\x1b\n1727978509569360306,1732066244,1\n"
    r = requests.post(
        urls.metrika("upload_calls"), headers=oauth, files={"file": ("c.csv", data)}, timeout=30
    )
    err = _metrika_error(r, 400)
    assert err["location"] == "line 1, column X\\x01\\x1b"
    assert b"\x01" not in r.content


def test_unicode_digit_client_id_is_a_rejected_row(api, urls, oauth):
    """``"²".isdigit()`` is true: a ClientId of Unicode digits is a rejected row, not a valid one."""
    data = "ClientId,DateTime\n1727978509569360306,1732066244\n²,1732066244\n".encode()
    r = requests.post(
        urls.metrika("upload_calls"), headers=oauth, files={"file": ("c.csv", data)}, timeout=30
    )
    assert r.status_code == 200, r.text[:300]
    assert (r.json()["uploading"]["source_quantity"], r.json()["uploading"]["line_quantity"]) == (2, 1)


# ------------------------------------------------------------------------------------------- the guard


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("calls", lambda body: set(body) == {"message"}),
        ("requests", lambda body: set(body) == {"message"}),
        ("plans", lambda body: body["data"]["type"] == "apiError"),
        ("metrika", lambda body: body["errors"][0]["error_type"] == "backend_error" and body["code"] == 500),
    ],
)
def test_unhandled_exception_is_a_500_in_the_api_shape(api, urls, oauth, plans_headers, path, check):
    """Fault ``internal_error``: the route raises; the answer is a JSON 500 in the API's shape, and the
    exception is logged and listed in ``/_sandbox/state`` ``internal_errors``; the next request is served."""
    api.faults(internal_error=1)
    send = {
        "calls": lambda: requests.get(
            urls.calls(),
            params={"clientApiId": CT_TOKEN, "dateFrom": "20/11/2024", "dateTo": "20/11/2024"},
            timeout=30,
        ),
        "requests": lambda: requests.get(
            urls.requests,
            params={"clientApiId": CT_TOKEN, "dateFrom": "11/20/2024", "dateTo": "11/20/2024"},
            timeout=30,
        ),
        "plans": lambda: requests.get(urls.plans("1/status"), headers=plans_headers, timeout=30),
        "metrika": lambda: requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30),
    }[path]
    r = send()
    assert r.status_code == 500, r.text[:300]
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert check(r.json()), r.text
    state = api.state()
    assert [e["error"] for e in state["internal_errors"]] == [
        "RuntimeError('sandbox fault internal_error: an unhandled exception inside the route')"
    ]
    assert state["requests"]["by_status"]["500"] == 1
    assert send().status_code != 500


def test_guard_catches_exceptions_outside_the_routes():
    """The outermost guard (sandbox.middleware): an exception before any response is sent is answered 500
    in the API's shape by the middleware itself (here the inner ASGI app is one that always raises)."""
    from starlette.testclient import TestClient

    from sandbox.middleware import SandboxMiddleware
    from sandbox.state import SandboxState

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("broken inner app")

    state = SandboxState({"metrika_rps": 1000, "calltouch_rps": 1000})
    client = TestClient(SandboxMiddleware(broken, state), raise_server_exceptions=True)
    r = client.get(
        "/management/v1/counter/20001/offline_conversions/calls_uploadings",
        headers={"Authorization": f"OAuth {YM_TOKEN}"},
    )
    assert r.status_code == 500 and r.json()["errors"][0]["error_type"] == "backend_error"
    r = client.get("/calls-service/RestAPI/requests", params={"clientApiId": CT_TOKEN})
    assert r.status_code == 500 and set(r.json()) == {"message"}
    assert [e["error"] for e in state.internal_errors] == ["ValueError('broken inner app')"] * 2
