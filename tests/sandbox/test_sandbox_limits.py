"""Rate limits, quotas and the points budget, observed by real clients."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = pytest.mark.integration

KNOWN = "1727978509569360306"


def _burst(n: int, url: str, **kwargs) -> list[requests.Response]:
    """Fire ``n`` requests at once from ``n`` threads, each on an already open connection."""
    sessions = [requests.Session() for _ in range(n)]
    base = url.split("/", 3)
    health = f"{base[0]}//{base[2]}/_sandbox/health"
    for s in sessions:
        s.get(health, timeout=30)  # open the connection first; test endpoints are not limited
    barrier = threading.Barrier(n)

    def fire(s: requests.Session) -> requests.Response:
        barrier.wait()
        return s.get(url, timeout=30, **kwargs)

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(fire, sessions))
    for s in sessions:
        s.close()
    return results


def test_seed_example_eleven_requests_five_succeed(sandbox, urls, ct_params):
    sandbox.reset(volume_overrides={"10001:2024-11-20": 3})
    results = _burst(11, urls.calls(), params=ct_params)
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * 5 + [429] * 6
    for r in results:
        if r.status_code == 429:
            assert r.text == "Too Many Requests"
            assert r.headers["Retry-After"] == "1"
    counts = sandbox.state()["requests"]
    assert counts["by_status"] == {"200": 5, "429": 6}
    assert sandbox.state()["points"]["spent"] == 5


def test_window_slides(sandbox, urls, ct_params):
    """Rejected requests do not count: after the window passes, requests are admitted again."""
    sandbox.reset(calltouch_rps=2, volume_overrides={"10001:2024-11-20": 1})
    with requests.Session() as s:
        first = [s.get(urls.calls(), params=ct_params, timeout=30).status_code for _ in range(3)]
        time.sleep(1.1)
        second = s.get(urls.calls(), params=ct_params, timeout=30).status_code
    assert first == [200, 200, 429]
    assert second == 200


def test_retry_after_fault_value(sandbox, urls, ct_params):
    sandbox.reset(calltouch_rps=1, volume_overrides={"10001:2024-11-20": 1})
    sandbox.faults(retry_after=7)
    with requests.Session() as s:
        s.get(urls.calls(), params=ct_params, timeout=30)
        r = s.get(urls.calls(), params=ct_params, timeout=30)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"


def test_points_budget(sandbox, urls, ct_params, plans_headers):
    sandbox.reset(calltouch_rps=1000, points_budget=3, volume_overrides={"10001:2024-11-20": 1})
    with requests.Session() as s:
        bad = s.get(urls.calls(), params={**ct_params, "dateFrom": "bad"}, timeout=30)
        assert bad.status_code == 400  # unsuccessful: no point spent
        codes = [s.get(urls.calls(), params=ct_params, timeout=30).status_code for _ in range(3)]
        spent = s.post(urls.plans("add"), headers=plans_headers, json={"items": []}, timeout=30)
    assert codes == [200, 200, 200]
    assert spent.status_code == 429
    assert spent.json() == {"type": "pointsLimitExceeded", "message": "Дневной лимит баллов API исчерпан"}
    assert "Retry-After" not in spent.headers
    assert sandbox.state()["points"] == {"budget": 3, "spent": 3}


def test_metrika_rps_quota(sandbox, urls, oauth):
    sandbox.reset(metrika_rps=3)
    with requests.Session() as s:
        results = [s.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30) for _ in range(5)]
    assert [r.status_code for r in results] == [200, 200, 200, 429, 429]
    body = results[-1].json()
    assert body["code"] == 429 and body["errors"][0]["error_type"] == "quota_requests_by_ip"
    assert "quota_requests_by_ip" in body["message"]


def test_metrika_parallel_quota(sandbox, urls, oauth):
    sandbox.faults(scope="metrika", latency=1.0)
    results = _burst(5, urls.metrika("calls_uploadings"), headers=oauth)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 200, 429, 429]
    rejected = [r.json() for r in results if r.status_code == 429]
    assert all(
        "quota_parallel_requests" in b["message"]
        and b["errors"][0]["error_type"] == "quota_parallel_requests"
        for b in rejected
    )
