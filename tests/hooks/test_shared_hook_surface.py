"""What both hooks share (hooks/_mixins.py and hooks/_transport.py, written once): HttpHook's generic methods, settings, tokens.

``TransportHookMixin`` gives CalltouchHook and MetrikaHook the same ``run`` / ``get_conn`` /
``check_response`` / ``transport``, each adding its own credentials; ``transport_settings`` validates
the settings of all four hooks (sync and async); ``connection_token`` names the missing token.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from calltouch_metrika.exceptions import AuthenticationError
from calltouch_metrika.hooks.calltouch import CalltouchAsyncHook, CalltouchHook
from calltouch_metrika.hooks.metrika import MetrikaAsyncHook, MetrikaHook

pytestmark = pytest.mark.integration

SITE = 10001
COUNTER = 20001
CT_TOKEN = "sandbox-ct-token"
YM_TOKEN = "sandbox-ym-token"


def test_metrika_generic_run_adds_the_oauth_header_per_request(sandbox: Any, metrika: Any) -> None:
    hook = metrika()
    response = hook.run(
        f"/management/v1/counter/{COUNTER}/offline_conversions/calls_uploadings", data={"limit": 1}
    )
    assert response.status_code == 200 and isinstance(response.json()["uploadings"], list)
    # the token went with the request only: the session itself carries no credentials
    assert "Authorization" not in hook.get_conn().headers and hook.get_conn().auth is None
    assert hook.transport.requests_sent == 1


def test_metrika_generic_run_gives_typed_errors_naming_the_connection(sandbox: Any, metrika: Any) -> None:
    with pytest.raises(AuthenticationError, match=r"Metrika \(metrika_default\)") as err:
        metrika().run("/management/v1/counter/99999/offline_conversions/calls_uploadings")
    assert getattr(err.value, "status_code", None) == 403
    assert YM_TOKEN not in str(err.value)


@pytest.mark.parametrize(
    ("make", "path", "what"),
    [
        (
            lambda f: f["calltouch"](),
            f"/calls-service/RestAPI/{SITE}/calls-diary/calls?dateFrom=20/11/2026&dateTo=20/11/2026",
            f"Calltouch site {SITE}",
        ),
        (
            lambda f: f["metrika"](),
            f"/management/v1/counter/{COUNTER}/offline_conversions/calls_uploadings",
            "Metrika (metrika_default)",
        ),
    ],
    ids=["calltouch", "metrika"],
)
def test_check_response_raises_the_hooks_typed_error(
    sandbox: Any, calltouch: Any, metrika: Any, make: Any, path: str, what: str
) -> None:
    """A raw answer fetched without credentials (through the hook's own session) is judged by the hook."""
    hook = make({"calltouch": calltouch, "metrika": metrika})
    raw = hook.get_conn().get(sandbox.url + path, timeout=10)
    assert raw.status_code in (401, 403)
    with pytest.raises(AuthenticationError, match=re.escape(what)) as err:
        hook.check_response(raw)
    assert getattr(err.value, "status_code", None) == raw.status_code
    ok = hook.get_conn().get(
        sandbox.url + path,
        params={"clientApiId": CT_TOKEN} if hook.conn_type == "calltouch" else None,
        headers={"Authorization": f"OAuth {YM_TOKEN}"} if hook.conn_type == "yandexmetrika" else None,
        timeout=10,
    )
    assert ok.status_code == 200
    hook.check_response(ok)  # a 2xx answer passes


@pytest.mark.parametrize("hook_class", [CalltouchHook, CalltouchAsyncHook, MetrikaHook, MetrikaAsyncHook])
@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"timeout": 0}, "timeout"),
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_every_hook_validates_its_transport_settings_at_construction(
    hook_class: type, setting: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        hook_class(**setting)


def test_hooks_keep_their_settings(sandbox: Any) -> None:
    for hook in (
        CalltouchHook(timeout=7.5, requests_per_second=2.0, max_attempts=2),
        CalltouchAsyncHook(timeout=7.5, requests_per_second=2.0, max_attempts=2),
        MetrikaHook(timeout=7.5, requests_per_second=2.0, max_attempts=2),
        MetrikaAsyncHook(timeout=7.5, requests_per_second=2.0, max_attempts=2),
    ):
        assert (hook.timeout, hook.requests_per_second, hook.policy.max_attempts) == (7.5, 2.0, 2)


@pytest.mark.parametrize(
    ("hook_class", "conn_type", "kind"),
    [
        (CalltouchHook, "calltouch", "Calltouch API token"),
        (MetrikaHook, "yandexmetrika", "Metrika OAuth token"),
    ],
)
def test_missing_token_names_the_connection_and_the_kind_of_token(
    sandbox: Any, add_connection: Any, hook_class: type, conn_type: str, kind: str
) -> None:
    conn = add_connection(
        "no_token", conn_type=conn_type, host=sandbox.url, password="  ", extra={"site_id": "1"}
    )
    with pytest.raises(
        AuthenticationError, match=f"'no_token' has no {kind}: put it in the connection's password"
    ):
        hook_class(conn).transport  # noqa: B018 - building the transport reads the connection
