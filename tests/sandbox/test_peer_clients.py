"""Request shapes of public clients, as their READMEs and docs describe them, and the documented answers.

Written from the documented shapes (api-notes §4 and the sources it cites; seed 000's examples), not from
the clients' code:

* Airbyte ``source-calltouch``: the ``calls`` stream pages the calls diary (``page``/``limit``, continue
  while ``pageTotal > page``) with ``withCallTags``, ``bindTo``, ``attribution``, ``withMapVisits`` over the
  whole range in one chain; the ``requests`` stream reads the requests journal unpaginated (dates
  ``mm/dd/yyyy``).
* SeeTheSun1 ``calltouch-export``: one day of unique, targeted ``utmMedium=cpc`` calls with
  ``withCallbackInfo=true``, paginated.
* Seed 000: the Python example ``requests.post(url, headers=..., files={"file": text})`` and the PHP
  example (``CurlFile`` of ``file.csv``).
* R ``rym``: ``rym_upload_calls`` sends a ``write.csv``-style file (row names as an unnamed first column,
  quoted strings) with ``client_id_type`` and ``comment``; ``rym_enable_calls``/``rym_allow_calls`` read
  ``success``/``date``.
* ``tapi-yandex-metrika``: ``offline_conversions_upload_calls`` with ``client_id_type``, ``comment``,
  ``new_goal_name`` query parameters; its retries key on the quota ``error_type`` names.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from tests.sandbox.conftest import CT_TOKEN, YM_TOKEN

pytestmark = pytest.mark.integration

#: The quota names tapi-yandex-metrika's retry logic knows (api-notes §3.5).
TAPI_QUOTA_TYPES = {
    "quota_requests_by_uid",
    "quota_delegate_requests",
    "quota_grants_requests",
    "quota_requests_by_ip",
    "quota_parallel_requests",
    "quota_requests_by_counter_id",
}
#: Fields Airbyte's calls schema types (api-notes §1.4).
AIRBYTE_CALL_FIELDS = {
    "callId",
    "date",
    "timestamp",
    "duration",
    "waitingConnect",
    "successful",
    "callerNumber",
}


def _airbyte_calls_stream(urls, date_from: str, date_to: str) -> list[dict]:
    """Every page of the range, one chain: continue while ``pageTotal > page``."""
    params = {
        "clientApiId": CT_TOKEN,
        "dateFrom": date_from,
        "dateTo": date_to,
        "limit": 1000,
        "withCallTags": "true",
        "bindTo": "call",
        "attribution": 1,
        "withMapVisits": "true",
    }
    records: list[dict] = []
    page = 1
    with requests.Session() as s:
        while True:
            r = s.get(urls.calls(), params={**params, "page": page}, timeout=60)
            assert r.status_code == 200, r.text[:300]
            doc = r.json()
            assert doc["page"] == page and doc["pageSize"] == 1000
            records.extend(doc["records"])
            if not doc["pageTotal"] > page:
                assert len(records) == doc["recordsTotal"]
                return records
            page += 1


def test_airbyte_calls_stream_reads_a_range_in_one_chain(api, urls):
    api.reset(calltouch_rps=1000, calls_per_day=150, seed="airbyte")
    records = _airbyte_calls_stream(urls, "01/09/2024", "15/10/2024")  # 45 days, 7 pages
    assert len(records) == 45 * 150
    assert len({r["callId"] for r in records}) == len(records)  # primary key: no duplicates across pages
    for r in records[:50]:
        assert r.keys() >= AIRBYTE_CALL_FIELDS
        assert isinstance(r["callTags"], list) and isinstance(r["mapVisits"], list)
        assert r["attribution"] == 1


def test_airbyte_calls_stream_of_an_empty_range_stops(api, urls):
    api.reset(calltouch_rps=1000, calls_per_day=0)
    assert _airbyte_calls_stream(urls, "01/09/2024", "30/09/2024") == []


@pytest.mark.parametrize("suffix", ["", "/"])
def test_airbyte_requests_stream_unpaginated(api, urls, suffix):
    """The requests stream has no pagination: one bare array for the range (dates ``mm/dd/yyyy``)."""
    params = {"clientApiId": CT_TOKEN, "dateFrom": "11/14/2024", "dateTo": "11/20/2024", "siteId": "10001"}
    r = requests.get(urls.requests + suffix, params=params, timeout=30, allow_redirects=False)
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list) and len(body) == 7 * 40
    assert all({"requestId", "requestNumber", "date", "dateStr"} <= row.keys() for row in body)


def test_see_the_sun_daily_cpc_calls_with_callback_info(api, urls):
    params = {
        "clientApiId": CT_TOKEN,
        "dateFrom": "20/11/2024",
        "dateTo": "20/11/2024",
        "limit": 1000,
        "uniqueOnly": "true",
        "targetOnly": "true",
        "utmMedium": "cpc",
        "withCallbackInfo": "true",
        "page": 1,
    }
    doc = requests.get(urls.calls(), params=params, timeout=30).json()
    assert doc["recordsTotal"] > 0
    for call in doc["records"]:
        assert call["uniqueCall"] and call["targetCall"] and call["utmMedium"] == "cpc"
        if call["callbackCall"]:
            assert call["callbackInfo"]["fields"]
        else:
            assert call["callbackInfo"] is None
    wider = requests.get(urls.calls(), params={**params, "utmMedium": None}, timeout=30).json()
    assert wider["recordsTotal"] > doc["recordsTotal"]


KNOWN = "1727978509569360306"
TS = 1732066244  # 2024-11-20


def _wait_processed(urls, upload_id: int) -> str:
    r = requests.get(
        urls.metrika(f"calls_uploading/{upload_id}"),
        headers={"Authorization": f"OAuth {YM_TOKEN}"},
        timeout=30,
    )
    assert r.status_code == 200
    return r.json()["uploading"]["status"]


def test_seed_000_python_example_upload(api, urls):
    """``files={"file": text}``: requests names the part ``file`` and uses the key as its filename."""
    api.configure(status_step_seconds=0)
    text = f"ClientId,DateTime,PhoneNumber,TalkDuration,CallMissed\n{KNOWN},{TS},+79990000001,42,0\n"
    r = requests.post(
        urls.metrika("upload_calls"),
        headers={"Authorization": f"OAuth {YM_TOKEN}"},
        files={"file": text},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    uploading = r.json()["uploading"]
    assert uploading["source_quantity"] == 1 and uploading["line_quantity"] == 1
    assert uploading["client_id_type"] == "CLIENT_ID"
    assert _wait_processed(urls, uploading["id"]) == "PROCESSED"


def test_seed_000_php_example_upload(api, urls):
    """``CurlFile(realpath('file.csv'))``: a ``file.csv`` part of type application/octet-stream."""
    text = f"UserId,DateTime,Price,Currency\n512345678,{TS},1500.50,RUB\n"
    r = requests.post(
        urls.metrika("upload_calls"),
        headers={"Authorization": f"OAuth {YM_TOKEN}"},
        files={"file": ("file.csv", text.encode(), "application/octet-stream")},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["uploading"]["client_id_type"] == "USER_ID"


def test_rym_calls_workflow(api, urls):
    """rym: enable calls, ask from when they link, upload a ``write.csv`` file, list the uploadings."""
    api.reset(metrika_rps=1000, now="2026-11-30T12:00:00Z", status_step_seconds=0)
    oauth = {"Authorization": f"OAuth {YM_TOKEN}"}
    enabled = requests.post(urls.metrika("calls_extended_threshold"), headers=oauth, timeout=30)
    assert enabled.status_code == 200 and enabled.json()["success"] is True
    allowed = requests.get(urls.metrika("calls_visit_join_threshold"), headers=oauth, timeout=30)
    since = datetime.fromisoformat(allowed.json()["date"])
    assert since == datetime(2026, 11, 9, 12, 0, tzinfo=UTC)
    ts = int(since.timestamp()) + 3600
    text = (
        '"","ClientId","DateTime","PhoneNumber","TalkDuration","Tag"\n'
        f'"1","{KNOWN}",{ts},"+79990000001",42,"Заявка, повторная"\n'
        f'"2","{KNOWN}",{ts + 60},"+79990000002",0,""\n'
    )
    r = requests.post(
        urls.metrika("upload_calls"),
        headers=oauth,
        params={"client_id_type": "CLIENT_ID", "comment": "Upload by rym at 2026-11-30 15:00:00"},
        files={"file": ("calls.csv", text.encode(), "text/csv")},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["uploading"]["line_quantity"] == 2
    listed = requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30).json()["uploadings"]
    assert [u["comment"] for u in listed] == ["Upload by rym at 2026-11-30 15:00:00"]
    assert listed[0]["status"] == "PROCESSED" and listed[0]["linked_quantity"] == 2


def test_tapi_multipart_upload_with_its_query_parameters(api, urls):
    oauth = {"Authorization": f"OAuth {YM_TOKEN}"}
    text = f"Yclid,DateTime,StaticCall\n71234567890123456789,{TS},0\n"
    r = requests.post(
        urls.metrika("upload_calls"),
        headers=oauth,
        params={"client_id_type": "YCLID", "comment": "tapi", "new_goal_name": "Звонок"},
        files={"file": ("calls.csv", text.encode())},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["uploading"]["client_id_type"] == "YCLID"
    for method in ("post", "delete"):
        assert getattr(requests, method)(
            urls.metrika("calls_extended_threshold"), headers=oauth, timeout=30
        ).ok


def test_tapi_json_body_instead_of_multipart_gets_metrikas_error(api, urls):
    """tapi serialises bodies as JSON (no multipart ``file``): Metrika's error document, not a crash."""
    r = requests.post(
        urls.metrika("upload_calls"),
        headers={"Authorization": f"OAuth {YM_TOKEN}", "Content-Type": "application/json"},
        params={"client_id_type": "CLIENT_ID"},
        data=b'"ClientId,DateTime\\n1,2\\n"',
        timeout=30,
    )
    assert r.status_code == 400
    body = r.json()
    assert body["errors"][0]["error_type"] == "missing_parameter" and body["errors"][0]["location"] == "file"


@pytest.mark.parametrize(
    "fault", [{"burst_429": 1}, {"burst_429": 1, "burst_429_type": "quota_requests_by_uid"}]
)
def test_tapi_quota_retry_keys_are_known(api, urls, fault):
    """tapi looks the quota ``error_type`` up among its names; a bare ``quota`` crashed it (KeyError)."""
    api.faults(scope="metrika", **fault)
    r = requests.get(
        urls.metrika("calls_uploadings"), headers={"Authorization": f"OAuth {YM_TOKEN}"}, timeout=30
    )
    assert r.status_code == 429
    assert r.json()["errors"][0]["error_type"] in TAPI_QUOTA_TYPES
