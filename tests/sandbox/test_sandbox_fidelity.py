"""What public clients send that the sandbox used to answer unlike the documentation (issue 16).

Filters, ``callbackInfo``, the undocumented-case choices of sandbox/README.md (R ``write.csv`` files, raw
UTF-8 query strings, an empty ``new_goal_name``, a multipart part without a filename), long ranges, trailing
slashes and the ``garbled_body`` fault.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.sandbox.conftest import CT_TOKEN

pytestmark = pytest.mark.integration

KNOWN = "1727978509569360306"
TS = "1732066244"  # 2024-11-20
DAYS = {
    "clientApiId": CT_TOKEN,
    "dateFrom": "18/11/2024",
    "dateTo": "20/11/2024",
    "page": "1",
    "limit": "1000",
}


def _calls(urls: Any, **params: str) -> dict[str, Any]:
    r = requests.get(urls.calls(), params={**DAYS, **params}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    return r.json()


# ------------------------------------------------------------------------------------------- filters


def test_utm_medium_filter(api, urls):
    """``utmMedium=cpc`` (what ``CalltouchHook(utm_medium=...)`` and SeeTheSun1 send) filters the calls."""
    every = _calls(urls)
    cpc = _calls(urls, utmMedium="cpc")
    assert 0 < cpc["recordsTotal"] < every["recordsTotal"]
    assert cpc["recordsTotal"] == sum(1 for c in every["records"] if c["utmMedium"] == "cpc")
    assert {c["utmMedium"] for c in cpc["records"]} == {"cpc"}


def test_utm_medium_filter_sees_the_attributed_source(api, urls):
    """With ``attribution=0`` some calls become ``(direct)``: the filter matches the values as sent."""
    calls = _calls(urls, utmMedium="cpc", attribution="0")
    assert {c["utmMedium"] for c in calls["records"]} == {"cpc"}
    assert calls["recordsTotal"] < _calls(urls, utmMedium="cpc")["recordsTotal"]


@pytest.mark.parametrize(
    ("params", "check"),
    [
        (
            {"utmSource.value": "yan", "utmSource.filterMode": "startwith"},
            lambda c: c["utmSource"].startswith("yan"),
        ),
        ({"source.value": "oogl", "source.filterMode": "contains"}, lambda c: "oogl" in c["source"]),
        ({"medium.value": "organic"}, lambda c: c["medium"] == "organic"),  # exact by default
    ],
)
def test_value_filter_mode_filters(api, urls, params, check):
    every = _calls(urls)
    some = _calls(urls, **params)
    assert 0 < some["recordsTotal"] < every["recordsTotal"]
    assert all(check(c) for c in some["records"])
    assert some["recordsTotal"] == sum(1 for c in every["records"] if check(c))


@pytest.mark.parametrize(
    "params",
    [{"callerNumber.value": "7999"}, {"utmMedium.filterMode": "sometimes", "utmMedium.value": "cpc"}],
)
def test_unknown_filter_is_rejected_not_ignored(api, urls, params):
    r = requests.get(urls.calls(), params={**DAYS, **params}, timeout=30)
    assert r.status_code == 400
    assert "message" in r.json()


def test_requests_source_filters(api, urls):
    """The requests journal's ``ani.*``/``email.*`` and ``source``/``medium`` filters (seed 004) filter."""
    base = {"clientApiId": CT_TOKEN, "dateFrom": "11/14/2024", "dateTo": "11/20/2024"}
    every = requests.get(urls.requests, params=base, timeout=30).json()
    cpc = requests.get(urls.requests, params={**base, "medium": "cpc"}, timeout=30).json()
    assert 0 < len(cpc) < len(every) and all(r["session"]["medium"] == "cpc" for r in cpc)
    phone = every[0]["client"]["phones"][0]["phoneNumber"]
    ani = requests.get(
        urls.requests, params={**base, "ani.value": phone[:5], "ani.filterMode": "startwith"}, timeout=30
    ).json()
    assert 0 < len(ani) <= len(every)
    assert all(any(p["phoneNumber"].startswith(phone[:5]) for p in r["client"]["phones"]) for r in ani)


# ------------------------------------------------------------------------------------------- callbackInfo


def test_callback_info_for_callback_calls(api, urls):
    records = _calls(urls, withCallbackInfo="true")["records"]
    callbacks = [c for c in records if c["callbackCall"]]
    assert callbacks, "a week has callback calls"
    for call in callbacks:
        fields = call["callbackInfo"]["fields"]
        assert {"name": "Имя"}.items() <= fields[0].items() and fields[0]["value"]
        assert fields[1]["name"] == "Номер телефона" and fields[1]["type"] == "phone"
    assert all(c["callbackInfo"] is None for c in records if not c["callbackCall"])
    assert all("callbackInfo" not in c for c in _calls(urls)["records"])
    again = _calls(urls, withCallbackInfo="true")["records"]
    assert again == records  # deterministic


# ------------------------------------------------------------------------------------------- CSV choices


def _upload(urls, oauth, files: Any, **params: str) -> requests.Response:
    return requests.post(urls.metrika("upload_calls"), headers=oauth, params=params, files=files, timeout=30)


def test_r_write_csv_unnamed_row_names_column_is_ignored(api, urls, oauth):
    """R's ``write.csv`` writes row names as a first column named ``""``: ignored, values unchecked."""
    text = (
        f'"","ClientId","DateTime","PhoneNumber"\n"1","{KNOWN}",{TS},"+79990000001"\n"2","{KNOWN}",{TS},NA\n'
    )
    r = _upload(urls, oauth, {"file": ("calls.csv", text.encode(), "text/csv")})
    assert r.status_code == 400  # R's NA is not a valid PhoneNumber: only the unnamed column is ignored
    assert "PhoneNumber" in r.json()["errors"][0]["location"]
    text = (
        f'"","ClientId","DateTime","PhoneNumber"\n"1","{KNOWN}",{TS},"+79990000001"\n"2","{KNOWN}",{TS},""\n'
    )
    r = _upload(urls, oauth, {"file": ("calls.csv", text.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["uploading"]["line_quantity"] == 2
    stored = api.state()["uploads"][-1]
    assert stored["columns"] == ["ClientId", "DateTime", "PhoneNumber"]
    assert stored["rows"][0] == {"ClientId": KNOWN, "DateTime": TS, "PhoneNumber": "+79990000001"}


def test_empty_new_goal_name_means_not_given(api, urls, oauth):
    r = _upload(
        urls, oauth, {"file": ("calls.csv", f"ClientId,DateTime\n{KNOWN},{TS}\n".encode())}, new_goal_name=""
    )
    assert r.status_code == 200, r.text
    assert api.state()["uploads"][-1]["new_goal_name"] is None
    blank = _upload(
        urls, oauth, {"file": ("c.csv", f"ClientId,DateTime\n{KNOWN},{TS}\n".encode())}, new_goal_name=" "
    )
    assert blank.status_code == 400 and blank.json()["errors"][0]["location"] == "new_goal_name"


def test_multipart_part_without_filename_is_the_file(api, urls, oauth):
    """A ``file`` part without ``filename=`` (a plain form field) is read as the file's content."""
    body = (
        b'--b0undary\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
        + f"ClientId,DateTime\n{KNOWN},{TS}\n".encode()
        + b"\r\n--b0undary--\r\n"
    )
    r = requests.post(
        urls.metrika("upload_calls"),
        headers={**oauth, "Content-Type": "multipart/form-data; boundary=b0undary"},
        data=body,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["uploading"]["line_quantity"] == 1


def _raw_get(base: str, target: bytes, headers: bytes = b"") -> tuple[int, bytes, bytes]:
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: sandbox\r\n" + headers + b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def test_raw_utf8_query_string_gets_the_api_error_body(api, urls, oauth):
    target = "/management/v1/counter/20001/offline_conversions/calls_uploadings?comment=Звонок".encode()
    status, head, body = _raw_get(urls.base, target, b"Authorization: OAuth sandbox-ym-token\r\n")
    assert status == 400 and b"application/json" in head.lower()
    doc = json.loads(body)
    assert doc["code"] == 400 and doc["errors"][0]["error_type"] == "invalid_parameter"
    target = f"/calls-service/RestAPI/requests?clientApiId={CT_TOKEN}&city=Москва".encode()
    status, head, body = _raw_get(urls.base, target)
    assert status == 400 and "message" in json.loads(body)
    # percent-encoded, the same query is fine
    ok = requests.get(
        urls.metrika("calls_uploadings"), headers=oauth, params={"comment": "Звонок"}, timeout=30
    )
    assert ok.status_code == 200


# ------------------------------------------------------------------------------------------- long ranges


def _cache(api) -> dict[str, int]:
    return api.state()["calls_cache"]


def test_a_page_of_a_long_range_renders_only_the_days_it_touches(api, urls):
    """698 days, 150 calls a day: a page of 1000 touches 7-8 days, whatever the range's length."""
    api.reset(calltouch_rps=1000, seed="long-range", now="2026-11-30T12:00:00+03:00")
    params = {"clientApiId": CT_TOKEN, "dateFrom": "01/01/2025", "dateTo": "29/11/2026", "limit": "1000"}
    before = _cache(api)
    for page in (1, 50, 105):
        r = requests.get(urls.calls(), params={**params, "page": str(page)}, timeout=60)
        assert r.status_code == 200
        doc = r.json()
        assert doc["recordsTotal"] == 698 * 150 and doc["pageTotal"] == 105
        assert len(doc["records"]) == (1000 if page < 105 else 698 * 150 - 104_000)
    after = _cache(api)
    assert after["days_rendered"] - before["days_rendered"] <= 3 * 8
    assert after["days_generated"] - before["days_generated"] <= 3 * 8


def test_filtered_long_range_counts_each_day_once(api, urls):
    api.reset(calltouch_rps=1000, seed="long-range-filtered", now="2026-11-30T12:00:00+03:00")
    params = {"clientApiId": CT_TOKEN, "dateFrom": "01/06/2026", "dateTo": "29/11/2026", "limit": "100"}
    first = requests.get(
        urls.calls(), params={**params, "page": "1", "targetOnly": "true"}, timeout=60
    ).json()
    mid = _cache(api)
    pages = [
        requests.get(urls.calls(), params={**params, "page": str(p), "targetOnly": "true"}, timeout=60).json()
        for p in (2, 3, first["pageTotal"])
    ]
    after = _cache(api)
    assert all(p["recordsTotal"] == first["recordsTotal"] for p in pages)
    assert after["days_generated"] - mid["days_generated"] <= 3 * 3  # only the days of those pages
    seen = [c["callId"] for p in [first, *pages] for c in p["records"]]
    assert len(seen) == len(set(seen)) and all(c["targetCall"] for p in pages for c in p["records"])


# ------------------------------------------------------------------------------------------- trailing slashes


def test_trailing_slashes_are_served_directly(api, urls, oauth, ct_params):
    r = requests.get(urls.calls() + "/", params=ct_params, timeout=30, allow_redirects=False)
    assert r.status_code == 200 and len(r.json()) == 150
    r = requests.get(urls.metrika("calls_uploadings") + "/", headers=oauth, timeout=30, allow_redirects=False)
    assert r.status_code == 200 and r.json() == {"uploadings": []}
    r = requests.post(
        urls.metrika("upload_calls") + "/",
        headers=oauth,
        files={"file": ("c.csv", f"ClientId,DateTime\n{KNOWN},{TS}\n".encode())},
        timeout=30,
        allow_redirects=False,
    )
    assert r.status_code == 200 and len(api.state()["uploads"]) == 1


# ------------------------------------------------------------------------------------------- garbled_body


def test_garbled_body_metrika(api, urls, oauth, ct_params):
    api.faults(scope="metrika", garbled_body=2)
    assert requests.get(urls.calls(), params=ct_params, timeout=30).status_code == 200  # other API untouched
    up = _upload(urls, oauth, {"file": ("c.csv", f"ClientId,DateTime\n{KNOWN},{TS}\n".encode())})
    assert up.status_code == 200
    with pytest.raises(ValueError):
        up.json()
    assert len(api.state()["uploads"]) == 1  # the upload was stored, only its answer is garbled
    bad = requests.get(urls.metrika("calls_uploading/999"), headers=oauth, timeout=30)
    assert bad.status_code == 200 and not bad.text.lstrip().startswith("{")  # even an error becomes a 200
    assert requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30).json()["uploadings"]
    assert api.state()["requests"]["by_status"]["garbled"] == 2


def test_garbled_body_calltouch(api, urls, ct_params):
    api.faults(scope="calltouch", garbled_body=1)
    r = requests.get(urls.calls(), params={**ct_params, "page": "1", "limit": "10"}, timeout=30)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    assert requests.get(urls.calls(), params=ct_params, timeout=30).json()


def test_garbled_body_of_one_endpoint(api, urls, oauth):
    """``garbled_endpoint`` garbles only that endpoint (e.g. the uploads-list lookup), the rest is untouched."""
    api.faults(scope="metrika", garbled_body=1, garbled_endpoint="calls_uploadings")
    up = _upload(urls, oauth, {"file": ("c.csv", f"ClientId,DateTime\n{KNOWN},{TS}\n".encode())})
    assert up.json()["uploading"]["id"] == 1
    assert requests.get(urls.metrika("calls_uploading/1"), headers=oauth, timeout=30).json()["uploading"]
    garbled = requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30)
    assert garbled.status_code == 200 and garbled.text.startswith("<!DOCTYPE html>")
    assert requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30).json()["uploadings"]
