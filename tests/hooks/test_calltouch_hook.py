"""CalltouchHook against the sandbox over loopback: every endpoint, pagination edges, faults, errors."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from calltouch_metrika.exceptions import (
    AuthenticationError,
    MalformedResponseError,
    OutcomeUnknownError,
    QuotaExceededError,
    ServerError,
    ValidationError,
)
from calltouch_metrika.hooks.calltouch import CALLS_PARAMS, REQUESTS_PARAMS, CalltouchHook, map_params
from tests.hooks.conftest import DAY, api_count, status_count

pytestmark = pytest.mark.integration

SITE = 10001
PLAN_ITEM = {
    "dateFrom": "01-04-2021",
    "dateTo": "02-04-2021",
    "source": "yandex",
    "medium": "cpc",
    "metric": {"type": "Лиды", "name": "Уникальные лиды", "value": 100},
}


def _day_of(record: dict[str, Any]) -> date:
    return datetime.strptime(record["date"], "%d/%m/%Y %H:%M:%S").date()


# ---------------------------------------------------------------------------------------------- calls


def test_get_calls_one_day_returns_every_call(sandbox: Any, calltouch: Any) -> None:
    hook = calltouch()
    calls = hook.get_calls(date(2026, 11, 20), date(2026, 11, 20))
    assert len(calls) == 150  # sandbox default calls_per_day
    assert len({c["callId"] for c in calls}) == 150
    assert {_day_of(c) for c in calls} == {date(2026, 11, 20)}
    assert hook.site_id == SITE
    assert api_count(sandbox.state(), "calltouch") == 1


@pytest.mark.parametrize(("volume", "pages"), [(0, 1), (1000, 1), (1001, 2), (2500, 3)])
def test_get_calls_pagination_edges(sandbox: Any, calltouch: Any, volume: int, pages: int) -> None:
    sandbox.reset(volume_overrides={f"{SITE}:{DAY}": volume})
    calls = calltouch().get_calls(DAY, DAY)
    assert len(calls) == volume
    assert len({c["callId"] for c in calls}) == volume
    state = sandbox.state()
    assert api_count(state, "calltouch") == pages
    assert status_count(state, "200") == pages


def test_get_calls_range_is_split_into_days_in_order(sandbox: Any, calltouch: Any) -> None:
    sandbox.reset(volume_overrides={f"{SITE}:2026-11-19": 1001, f"{SITE}:2026-11-21": 0})
    calls = calltouch().get_calls(date(2026, 11, 18), date(2026, 11, 21))
    assert len(calls) == 150 + 1001 + 150 + 0
    days = [_day_of(c) for c in calls]
    assert days == sorted(days)
    # one request per day (+1 for the second page of the 1001-call day)
    assert api_count(sandbox.state(), "calltouch") == 5


def test_get_calls_flags_and_filters_reach_the_api(sandbox: Any, calltouch: Any) -> None:
    hook = calltouch()
    plain = hook.get_calls(DAY, DAY)
    assert all("callTags" not in c for c in plain)
    tagged = hook.get_calls(DAY, DAY, with_call_tags=True, with_orders=True, with_comments=True)
    assert tagged and all("callTags" in c and "orders" in c and "comments" in c for c in tagged)
    targets = hook.get_calls(DAY, DAY, target_only=True)
    assert 0 < len(targets) < len(plain)
    assert all(c["targetCall"] for c in targets)
    session_bound = hook.get_calls(DAY, DAY, bind_to="session", attribution=0)
    assert all(c["attribution"] == 0 for c in session_bound)


def test_get_calls_rejects_unknown_and_bad_parameters(sandbox: Any, calltouch: Any) -> None:
    hook = calltouch()
    with pytest.raises(TypeError, match="with_call_tag"):
        hook.get_calls(DAY, DAY, with_call_tag=True)
    with pytest.raises(ValueError, match="bind_to"):
        hook.get_calls(DAY, DAY, bind_to="request")
    with pytest.raises(ValueError, match="attribution"):
        hook.get_calls(DAY, DAY, attribution=2)
    with pytest.raises(ValueError, match="after"):
        hook.get_calls(date(2026, 11, 21), date(2026, 11, 20))
    assert api_count(sandbox.state(), "calltouch") == 0


def test_param_tables_cover_the_documented_parameters() -> None:
    assert {"withCallTags", "bindTo", "attribution", "uniqTargetOnly", "withMapVisits", "withOrders"} <= set(
        CALLS_PARAMS.values()
    )
    for api_name in (
        "requestId", "requestNumber", "subject", "keywords", "city", "source", "medium", "bindTo",
        "ani.value", "ani.filterMode", "email.value", "email.filterMode", "manager", "attribution",
        "timeFrom", "timeTo", "withMapVisits", "withRequestTags", "withYandexDirect", "withGoogleAdwords",
        "withAttrs", "withWidgetInfo", "withCustomFields", "withDcm",
    ):  # fmt: skip
        assert api_name in REQUESTS_PARAMS.values(), api_name
    mapped = map_params(
        {"request_id": [1, 2], "ani_value": "7999", "ani_filter_mode": "contains", "with_attrs": True},
        REQUESTS_PARAMS,
        method="get_requests",
    )
    assert mapped == {
        "requestId": "1,2",
        "ani.value": "7999",
        "ani.filterMode": "contains",
        "withAttrs": "true",
    }


# ------------------------------------------------------------------------------------------- requests


def test_get_requests_range(sandbox: Any, calltouch: Any) -> None:
    records = calltouch().get_requests(date(2026, 11, 19), date(2026, 11, 20))
    assert len(records) == 80  # sandbox default requests_per_day, two days
    assert all(isinstance(r["date"], int) and "dateStr" in r for r in records)
    assert api_count(sandbox.state(), "calltouch") == 2


def test_get_requests_filters_and_flags(sandbox: Any, calltouch: Any) -> None:
    hook = calltouch()
    every = hook.get_requests(DAY, DAY)
    tagged = hook.get_requests(DAY, DAY, with_request_tags=True, with_map_visits=True)
    assert all("RequestTags" in r and "mapVisits" in r for r in tagged)
    wanted = [every[0]["requestId"], every[1]["requestId"]]
    by_id = hook.get_requests(None, None, request_id=wanted)
    assert sorted(r["requestId"] for r in by_id) == sorted(wanted)
    subject = every[0]["subject"]
    assert all(r["subject"].startswith(subject) for r in hook.get_requests(DAY, DAY, subject=subject))
    with pytest.raises(ValueError, match="ani_filter_mode"):
        hook.get_requests(DAY, DAY, ani_value="7", ani_filter_mode="fuzzy")
    with pytest.raises(ValueError, match="request_id"):
        hook.get_requests(None, None)


# --------------------------------------------------------------------------------------- plans import


def test_plans_import_add_and_status(sandbox: Any, calltouch: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0.3)
    hook = calltouch()
    import_id = hook.plans_import_add([PLAN_ITEM])
    assert isinstance(import_id, int)
    first = hook.plans_import_status(import_id)
    assert first["status"] in ("in progress...", "success")
    assert first["items"][0]["metric"]["name"] == "Уникальные лиды"
    state = sandbox.state()
    assert len(state["plans_imports"]) == 1
    assert state["plans_imports"][0]["site_id"] == SITE


def test_plans_import_status_eventually_success(sandbox: Any, calltouch: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0.0)
    hook = calltouch()
    import_id = hook.plans_import_add([PLAN_ITEM])
    assert hook.plans_import_status(import_id)["status"] == "success"


def test_plans_import_validation_error_lists_violations(sandbox: Any, calltouch: Any) -> None:
    bad = {**PLAN_ITEM, "dateTo": "32-04-2021", "metric": {"type": "", "name": "x", "value": 1}}
    with pytest.raises(ValidationError) as err:
        calltouch().plans_import_add([bad])
    fields = [f for f, _ in err.value.violations]
    assert "items[0].dateTo" in fields
    assert "items[0].dateTo: " in str(err.value)
    assert sandbox.state()["plans_imports"] == []


def test_plans_import_refuses_more_than_100_items(sandbox: Any, calltouch: Any) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        calltouch().plans_import_add([PLAN_ITEM] * 101)


def test_plans_import_503_is_retried_once_safely(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(fail_5xx=1, scope="calltouch")
    calltouch().plans_import_add([PLAN_ITEM])
    assert len(sandbox.state()["plans_imports"]) == 1


def test_plans_import_dropped_connection_is_outcome_unknown(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(drop_connection=1, scope="calltouch")
    with pytest.raises(OutcomeUnknownError, match="not re-sent"):
        calltouch().plans_import_add([PLAN_ITEM])
    assert api_count(sandbox.state(), "calltouch") == 1


def test_plans_import_timeout_is_outcome_unknown(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(latency=1.5, scope="calltouch")
    with pytest.raises(OutcomeUnknownError):
        calltouch(timeout=0.5).plans_import_add([PLAN_ITEM])
    assert api_count(sandbox.state(), "calltouch") == 1


# ---------------------------------------------------------------------------------------------- auth


def test_wrong_token_names_site_not_token(sandbox: Any, calltouch: Any, add_connection: Any) -> None:
    url = sandbox.url
    conn = add_connection(
        "ct_bad", conn_type="calltouch", host=url, password="wrong-token-123456", extra={"site_id": "10001"}
    )
    with pytest.raises(AuthenticationError) as err:
        calltouch(conn).get_calls(DAY, DAY)
    assert "10001" in str(err.value)
    assert "wrong-token-123456" not in str(err.value)
    with pytest.raises(AuthenticationError, match="Access token"):
        calltouch(conn).plans_import_add([PLAN_ITEM])


def test_site_not_owned_by_token(sandbox: Any, calltouch: Any) -> None:
    with pytest.raises(AuthenticationError, match="10003"):
        calltouch(site_id=10003).get_calls(DAY, DAY)


def test_missing_site_id_is_a_clear_error(sandbox: Any, calltouch: Any, add_connection: Any) -> None:
    conn = add_connection("ct_nosite", conn_type="calltouch", host=sandbox.url, password="sandbox-ct-token")
    with pytest.raises(ValueError, match="site_id"):
        calltouch(conn).get_calls(DAY, DAY)
    assert calltouch(conn, site_id="10002").get_calls(DAY, DAY)


# -------------------------------------------------------------------------------------- faults/limits


def test_429_storm_is_recovered(sandbox: Any, calltouch: Any) -> None:
    sandbox.reset(volume_overrides={f"{SITE}:{DAY}": 3500})
    sandbox.faults(burst_429=4, scope="calltouch")
    calls = calltouch().get_calls(DAY, DAY)
    assert len(calls) == 3500
    state = sandbox.state()
    assert status_count(state, "429") >= 4
    assert status_count(state, "200") == 4


def test_429_storm_longer_than_attempts_is_quota_error(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(burst_429=10, scope="calltouch")
    with pytest.raises(QuotaExceededError, match="429"):
        calltouch(max_attempts=3).get_calls(DAY, DAY)


def test_5xx_burst_is_recovered(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(fail_5xx=3, scope="calltouch")
    assert len(calltouch().get_calls(DAY, DAY)) == 150
    assert status_count(sandbox.state(), "503") == 3


def test_5xx_after_every_retry_is_server_error(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(fail_5xx=10, scope="calltouch")
    with pytest.raises(ServerError, match="3 attempt"):
        calltouch(max_attempts=3).get_calls(DAY, DAY)
    assert api_count(sandbox.state(), "calltouch") == 3


def test_timeout_is_retried_then_server_error(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(latency=1.0, scope="calltouch")
    with pytest.raises(ServerError, match=r"no answer within 0\.3 s"):
        calltouch(timeout=0.3, max_attempts=2).get_calls(DAY, DAY)
    assert api_count(sandbox.state(), "calltouch") == 2


def test_dropped_connections_are_recovered(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(drop_connection=2, scope="calltouch")
    assert len(calltouch().get_calls(DAY, DAY)) == 150


def test_dropped_connections_every_time_is_server_error(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(drop_connection=5, scope="calltouch")
    with pytest.raises(ServerError, match="closed without an answer"):
        calltouch(max_attempts=2).get_calls(DAY, DAY)


def test_truncated_body_is_retried(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(truncate_body=1, scope="calltouch")
    assert len(calltouch().get_calls(DAY, DAY)) == 150


def test_truncated_bodies_give_malformed_response(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(truncate_body=5, scope="calltouch")
    with pytest.raises(MalformedResponseError, match="cut short"):
        calltouch(max_attempts=2).get_requests(DAY, DAY)


def test_points_budget_exhausted_is_quota_error_without_retry(sandbox: Any, calltouch: Any) -> None:
    sandbox.reset(points_budget=1)
    hook = calltouch()
    hook.get_calls(DAY, DAY)
    with pytest.raises(QuotaExceededError, match="points"):
        hook.get_calls(DAY, DAY)
    assert api_count(sandbox.state(), "calltouch") == 2


# ------------------------------------------------------------------------------------ test button


def test_test_connection_good_and_bad(sandbox: Any, calltouch: Any, add_connection: Any) -> None:
    ok, message = calltouch().test_connection()
    assert ok, message
    assert "10001" in message
    conn = add_connection(
        "ct_bad_tc",
        conn_type="calltouch",
        host=sandbox.url,
        password="bad-token-abcdef",
        extra={"site_id": 10001},
    )
    ok, message = calltouch(conn).test_connection()
    assert not ok
    assert "token" in message and "bad-token-abcdef" not in message


def test_hook_is_an_http_hook_with_our_conn_type() -> None:
    from airflow.providers.http.hooks.http import HttpHook

    assert issubclass(CalltouchHook, HttpHook)
    assert CalltouchHook.conn_type == "calltouch"
    assert CalltouchHook.default_conn_name == "calltouch_default"


def test_connection_refused_is_retried_then_server_error(calltouch: Any, add_connection: Any) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = add_connection(
        "ct_refused", conn_type="calltouch", host=f"http://127.0.0.1:{port}", password="sandbox-ct-token",
        extra={"site_id": "10001"},
    )  # fmt: skip
    with pytest.raises(ServerError, match="refused"):
        calltouch(conn, max_attempts=2).get_calls(DAY, DAY)
    # nothing was sent, so even a non-idempotent request is safely retried (and ends as ServerError)
    with pytest.raises(ServerError, match="refused"):
        calltouch(conn, max_attempts=2).plans_import_add([PLAN_ITEM])


def test_generic_run_goes_through_the_same_safety_net(sandbox: Any, calltouch: Any) -> None:
    hook = calltouch()
    response = hook.run(
        f"/calls-service/RestAPI/{SITE}/calls-diary/calls",
        data={"dateFrom": "20/11/2026", "dateTo": "20/11/2026", "page": 1, "limit": 5},
    )
    assert len(response.json()["records"]) == 5
    with pytest.raises(ValidationError, match="dateTo"):
        hook.run(f"/calls-service/RestAPI/{SITE}/calls-diary/calls", data={"dateFrom": "20/11/2026"})


def test_iter_calls_by_day_yields_each_day_in_order(sandbox: Any, calltouch: Any) -> None:
    volumes = {"2026-11-14": 0, "2026-11-15": 1001, "2026-11-16": 3, "2026-11-17": 2000}
    sandbox.reset(volume_overrides={f"{SITE}:{d}": n for d, n in volumes.items()})
    hook = calltouch(max_in_flight=2)
    got = [(day.isoformat(), len(calls)) for day, calls in hook.iter_calls_by_day("2026-11-14", "2026-11-20")]
    assert got[:4] == list(volumes.items())
    assert [d for d, _ in got] == [f"2026-11-{d}" for d in range(14, 21)]
    # stopping early cancels what is queued and does not hang
    first_day, first_calls = next(iter(hook.iter_calls_by_day("2026-11-15", "2026-11-20")))
    assert first_day == date(2026, 11, 15) and len(first_calls) == 1001


def test_iter_requests_by_day(sandbox: Any, calltouch: Any) -> None:
    got = [
        (day, len(r)) for day, r in calltouch().iter_requests_by_day(date(2026, 11, 18), date(2026, 11, 20))
    ]
    assert got == [(date(2026, 11, d), 40) for d in (18, 19, 20)]


def test_get_requests_every_filter_reaches_the_api(sandbox: Any, calltouch: Any) -> None:
    """Each seed-004 filter, with a value taken from the data, narrows the answer as documented."""
    hook = calltouch()
    every = hook.get_requests(DAY, DAY)
    with_session = next(r for r in every if r.get("session"))
    with_phone = next(r for r in every if r["client"]["phones"])
    with_email = next(r for r in every if r["client"]["contacts"])
    with_manager = next((r for r in every if r.get("manager")), None)
    phone = with_phone["client"]["phones"][0]["phoneNumber"]
    email = with_email["client"]["contacts"][0]["contactValue"]
    cases: dict[str, tuple[dict[str, Any], Any]] = {
        "keywords": ({"keywords": with_session["session"]["keywords"]}, lambda r: r["session"]),
        "city": ({"city": with_session["session"]["city"]}, lambda r: r["session"]["city"] == with_session["session"]["city"]),
        "source": ({"source": with_session["session"]["source"]}, lambda r: r["session"]["source"] == with_session["session"]["source"]),
        "medium": ({"medium": with_session["session"]["medium"]}, lambda r: r["session"]["medium"] == with_session["session"]["medium"]),
        "ani exact": ({"ani_value": phone}, lambda r: any(p["phoneNumber"] == phone for p in r["client"]["phones"])),
        "ani contains": ({"ani_value": phone[3:8], "ani_filter_mode": "contains"}, lambda r: any(phone[3:8] in p["phoneNumber"] for p in r["client"]["phones"])),
        "email startwith": ({"email_value": email[:3], "email_filter_mode": "startwith"}, lambda r: any(c["contactValue"].startswith(email[:3]) for c in r["client"]["contacts"])),
        "request_number": ({"request_number": [every[2]["requestNumber"]]}, lambda r: r["requestNumber"] == every[2]["requestNumber"]),
        "time window": ({"time_from": "00:00:00", "time_to": "11:59:59"}, lambda r: r["dateStr"][11:13] < "12"),
    }  # fmt: skip
    if with_manager:
        cases["manager"] = (
            {"manager": with_manager["manager"]},
            lambda r: r["manager"] == with_manager["manager"],
        )
    for name, (params, check) in cases.items():
        got = hook.get_requests(DAY, DAY, **params)
        assert got, name
        assert all(check(r) for r in got), name
    flags = hook.get_requests(
        DAY, DAY, with_attrs=True, with_widget_info=True, with_custom_fields=True, with_dcm=True,
        with_yandex_direct=True, with_google_adwords=True, attribution=1, bind_to="session",
    )  # fmt: skip
    assert flags and all("dcm" in r for r in flags)
