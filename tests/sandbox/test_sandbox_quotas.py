"""Metrika quota errors name the quota (api-notes §3.5, "Types of errors"), and the daily per-user quota.

Every quota answer is HTTP 429 with Metrika's error document, whose ``error_type`` is the quota's name:
``quota_requests_by_ip`` (30/s per IP), ``quota_parallel_requests`` (3 at once per user),
``quota_requests_by_uid`` (5,000 a day per user, reset at 00:00 GMT) and, through the ``burst_429``
fault, ``quota_delegate_requests``, ``quota_grants_requests``, ``quota_requests_by_counter_id``.
"""

from __future__ import annotations

import pytest
import requests

from sandbox.config import METRIKA_QUOTA_TYPES

pytestmark = pytest.mark.integration

OTHER_TOKEN = "sandbox-ym-token-2"


def _list(urls, token: str = "sandbox-ym-token") -> requests.Response:
    return requests.get(
        urls.metrika("calls_uploadings"), headers={"Authorization": f"OAuth {token}"}, timeout=30
    )


def _quota_error(r: requests.Response) -> str:
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["code"] == 429 and set(body) == {"errors", "code", "message"}
    assert len(body["errors"]) == 1 and body["errors"][0]["message"] == body["message"]
    return body["errors"][0]["error_type"]


def test_daily_quota_per_user_resets_at_midnight_gmt(api, urls):
    api.reset(
        metrika_rps=1000,
        metrika_parallel=100,
        metrika_daily_quota=3,
        now="2026-11-30T23:59:30Z",  # 02:59:30 in Moscow: the reset follows GMT, not the site's clock
        metrika_tokens={"sandbox-ym-token": [20001], OTHER_TOKEN: [20001, 20002]},
    )
    assert [_list(urls).status_code for _ in range(3)] == [200, 200, 200]
    spent = _list(urls)
    assert _quota_error(spent) == "quota_requests_by_uid"
    assert "2026-12-01T00:00:00Z" in spent.json()["message"]  # says when it resets
    assert "Retry-After" not in spent.headers  # retrying before the reset is pointless
    assert _list(urls, OTHER_TOKEN).status_code == 200  # counted per user (token)
    assert api.state()["metrika_quota"]["used"] == {"sandbox-ym-token": 3, OTHER_TOKEN: 1}
    api.configure(now="2026-12-01T00:00:01Z")
    assert _list(urls).status_code == 200


def test_daily_quota_default_is_5000(api):
    assert api.state()["config"]["metrika_daily_quota"] == 5000


def test_rejected_requests_do_not_spend_the_daily_quota(api, urls):
    api.reset(metrika_rps=2, metrika_daily_quota=5)
    with requests.Session() as s:
        codes = [
            s.get(
                urls.metrika("calls_uploadings"), headers={"Authorization": "OAuth sandbox-ym-token"}
            ).status_code
            for _ in range(4)
        ]
    assert codes == [200, 200, 429, 429]
    assert api.state()["metrika_quota"]["used"] == {"sandbox-ym-token": 2}


@pytest.mark.parametrize("quota", METRIKA_QUOTA_TYPES)
def test_burst_429_names_the_chosen_quota(api, urls, quota):
    api.faults(scope="metrika", burst_429=1, burst_429_type=quota, retry_after=2)
    r = _list(urls)
    assert _quota_error(r) == quota
    assert quota in r.json()["message"]
    assert ("Retry-After" in r.headers) == (quota != "quota_requests_by_uid")
    assert _list(urls).status_code == 200


def test_burst_429_default_is_requests_by_ip(api, urls):
    api.faults(burst_429=1)
    assert _quota_error(_list(urls)) == "quota_requests_by_ip"


def test_burst_429_type_must_be_a_metrika_quota(api):
    r = requests.post(
        f"{api.url}/_sandbox/faults", json={"burst_429": 1, "burst_429_type": "quota"}, timeout=30
    )
    assert r.status_code == 400
