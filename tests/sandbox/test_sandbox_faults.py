"""Each fault, observed from real clients (requests and aiohttp)."""

from __future__ import annotations

import aiohttp
import pytest
import requests

pytestmark = pytest.mark.integration

KNOWN = "1727978509569360306"
CSV = f"ClientId,DateTime\n{KNOWN},1732066244\n".encode()


def test_drop_connection_requests(api, urls, ct_params):
    api.faults(drop_connection=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(urls.calls(), params=ct_params, timeout=30)
    assert requests.get(urls.calls(), params=ct_params, timeout=30).status_code == 200
    assert api.state()["requests"]["by_status"]["dropped"] == 1


async def test_drop_connection_aiohttp(api, urls, ct_params):
    # aiohttp silently retries an idempotent request once after a disconnect, so drop two.
    api.faults(drop_connection=2)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.get(urls.calls(), params=ct_params) as r:
                await r.read()


def test_truncate_body_requests(api, urls, ct_params):
    api.faults(truncate_body=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(urls.calls(), params=ct_params, timeout=30)
    assert len(requests.get(urls.calls(), params=ct_params, timeout=30).json()) == 150


async def test_truncate_body_aiohttp(api, urls, oauth):
    api.faults(truncate_body=1)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(urls.metrika("calls_uploadings"), headers=oauth) as r:
                await r.read()


def test_lose_upload_response_stores_the_upload(api, urls, oauth):
    api.faults(lose_upload_response=1)
    with pytest.raises(requests.ConnectionError):
        requests.post(
            urls.metrika("upload_calls"),
            headers=oauth,
            params={"comment": "lost"},
            files={"file": ("c.csv", CSV)},
            timeout=30,
        )
    uploads = api.state()["uploads"]
    assert len(uploads) == 1 and uploads[0]["comment"] == "lost"
    listed = requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30).json()["uploadings"]
    assert [u["comment"] for u in listed] == ["lost"]


async def test_lose_upload_response_aiohttp(api, urls, oauth):
    api.faults(lose_upload_response=1)
    form = aiohttp.FormData()
    form.add_field("file", CSV, filename="c.csv", content_type="text/csv")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(urls.metrika("upload_calls"), headers=oauth, data=form) as r:
                await r.read()
    assert len(api.state()["uploads"]) == 1


def test_fail_5xx_counts_down(api, urls, ct_params, oauth):
    api.faults(fail_5xx=2)
    ct = requests.get(urls.calls(), params=ct_params, timeout=30)
    ym = requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30)
    assert ct.status_code == 503 and "503" in ct.text
    assert ym.status_code == 503 and ym.json()["errors"][0]["error_type"] == "backend_error"
    assert requests.get(urls.calls(), params=ct_params, timeout=30).status_code == 200


def test_fail_5xx_rate_is_seeded(api, urls, ct_params):
    def run() -> list[int]:
        api.reset(calltouch_rps=1000, volume_overrides={"10001:2024-11-20": 1})
        api.faults(fail_5xx_rate=0.5)
        return [requests.get(urls.calls(), params=ct_params, timeout=30).status_code for _ in range(20)]

    first = run()
    assert set(first) == {200, 503}
    assert run() == first


def test_burst_429_uses_each_api_body(api, urls, ct_params, oauth):
    api.faults(burst_429=2, retry_after=3)
    ct = requests.get(urls.calls(), params=ct_params, timeout=30)
    ym = requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30)
    assert ct.status_code == 429 and ct.text == "Too Many Requests" and ct.headers["Retry-After"] == "3"
    assert ym.status_code == 429 and ym.json()["errors"][0]["error_type"] == "quota_requests_by_ip"
    assert requests.get(urls.calls(), params=ct_params, timeout=30).status_code == 200


def test_scope_limits_faults_to_one_api(api, urls, ct_params, oauth):
    api.faults(scope="metrika", fail_5xx=1)
    assert requests.get(urls.calls(), params=ct_params, timeout=30).status_code == 200
    assert requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30).status_code == 503


def test_control_endpoints_are_never_faulted(api):
    api.faults(fail_5xx=5, drop_connection=5)
    assert requests.get(f"{api.url}/_sandbox/health", timeout=30).json() == {"ok": True}
    assert api.state()["faults"]["fail_5xx"] == 5


def test_bad_faults_and_config_are_rejected(api):
    for path, body in (
        ("/_sandbox/faults", {"explode": 1}),
        ("/_sandbox/reset", {"calls_per_day": -1}),
        ("/_sandbox/config", {"no_such_key": 1}),
    ):
        r = requests.post(f"{api.url}{path}", json=body, timeout=30)
        assert r.status_code == 400


def test_reset_forgets_everything(api, urls, oauth):
    requests.post(urls.metrika("upload_calls"), headers=oauth, files={"file": ("c.csv", CSV)}, timeout=30)
    api.faults(fail_5xx=3)
    api.reset()
    state = api.state()
    assert state["uploads"] == [] and state["plans_imports"] == []
    assert state["requests"]["total"] == 0 and state["points"]["spent"] == 0
    assert state["faults"]["fail_5xx"] == 0
    assert state["config"]["calltouch_rps"] == 5


def test_state_can_leave_out_rows(api, urls, oauth):
    requests.post(urls.metrika("upload_calls"), headers=oauth, files={"file": ("c.csv", CSV)}, timeout=30)
    full = requests.get(f"{api.url}/_sandbox/state", timeout=30).json()
    slim = requests.get(f"{api.url}/_sandbox/state", params={"rows": "false"}, timeout=30).json()
    assert full["uploads"][0]["rows"] == [{"ClientId": KNOWN, "DateTime": "1732066244"}]
    assert "rows" not in slim["uploads"][0] and slim["uploads"][0]["line_quantity"] == 1
