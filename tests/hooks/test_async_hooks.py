"""CalltouchAsyncHook and MetrikaAsyncHook (what triggers poll) against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from calltouch_metrika.exceptions import (
    AuthenticationError,
    MalformedResponseError,
    NotFoundError,
    ServerError,
)
from calltouch_metrika.hooks.calltouch import CalltouchAsyncHook
from calltouch_metrika.hooks.metrika import MetrikaAsyncHook
from tests.hooks.conftest import FAST, calls_csv, status_count

pytestmark = pytest.mark.integration

PLAN_ITEM = {
    "dateFrom": "01-04-2021",
    "dateTo": "01-04-2021",
    "source": "yandex",
    "metric": {"type": "Лиды", "name": "Уникальные лиды", "value": 7},
}


@pytest.fixture(autouse=True)
def _no_sync_connection_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Async hooks must use ``aget_connection``: the sync lookup can deadlock a triggerer."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sync get_connection called from an async hook")

    monkeypatch.setattr(CalltouchAsyncHook, "get_connection", classmethod(refuse))
    monkeypatch.setattr(MetrikaAsyncHook, "get_connection", classmethod(refuse))


async def test_calltouch_async_plans_status(sandbox: Any, calltouch: Any) -> None:
    sandbox.reset(plans_in_progress_seconds=0.0)
    import_id = calltouch().plans_import_add([PLAN_ITEM])
    data = await CalltouchAsyncHook(**FAST).plans_import_status(import_id)
    assert data["status"] == "success"
    assert data["items"][0]["metric"]["value"] == 7


async def test_calltouch_async_unknown_import_and_bad_token(sandbox: Any, add_connection: Any) -> None:
    with pytest.raises(NotFoundError, match="12345"):
        await CalltouchAsyncHook(**FAST).plans_import_status(12345)
    conn = add_connection(
        "ct_async_bad",
        conn_type="calltouch",
        host=sandbox.url,
        password="nope-nope-nope",
        extra={"site_id": 10001},
    )
    with pytest.raises(AuthenticationError) as err:
        await CalltouchAsyncHook(conn, **FAST).plans_import_status(1)
    assert "nope-nope-nope" not in str(err.value)


async def test_calltouch_async_recovers_from_5xx_and_drops(sandbox: Any, calltouch: Any) -> None:
    import_id = calltouch().plans_import_add([PLAN_ITEM])
    sandbox.faults(fail_5xx=2, drop_connection=1, scope="calltouch")
    data = await CalltouchAsyncHook(**FAST).plans_import_status(import_id)
    assert data["status"] in ("in progress...", "success")
    assert status_count(sandbox.state(), "503") == 2


async def test_metrika_async_get_uploading(sandbox: Any, metrika: Any) -> None:
    record = metrika().upload_calls(20001, calls_csv(), comment="async")
    sandbox.faults(burst_429=1, truncate_body=1, scope="metrika")
    got = await MetrikaAsyncHook(**FAST).get_calls_uploading(20001, record["id"])
    assert got["id"] == record["id"] and got["comment"] == "async"
    assert status_count(sandbox.state(), "429") == 1


async def test_metrika_async_errors(sandbox: Any, add_connection: Any) -> None:
    with pytest.raises(NotFoundError):
        await MetrikaAsyncHook(**FAST).get_calls_uploading(20001, 404)
    conn = add_connection(
        "ym_async_bad", conn_type="yandexmetrika", host=sandbox.url, password="bad-ym-async"
    )
    with pytest.raises(AuthenticationError, match="20001"):
        await MetrikaAsyncHook(conn, **FAST).get_calls_uploading(20001, 1)
    sandbox.faults(fail_5xx=9, scope="metrika")
    with pytest.raises(ServerError):
        await MetrikaAsyncHook(max_attempts=2, **FAST).get_calls_uploading(20001, 1)
    sandbox.faults(truncate_body=9, scope="metrika")
    with pytest.raises(MalformedResponseError):
        await MetrikaAsyncHook(max_attempts=2, **FAST).get_calls_uploading(20001, 1)


async def test_metrika_async_timeout(sandbox: Any) -> None:
    sandbox.faults(latency=1.0, scope="metrika")
    with pytest.raises(ServerError, match="no answer within"):
        await MetrikaAsyncHook(timeout=0.3, max_attempts=2, **FAST).get_calls_uploading(20001, 1)


async def test_async_hooks_register_tokens_with_the_masker(sandbox: Any, add_connection: Any) -> None:
    from urllib.parse import quote

    from airflow.sdk._shared.secrets_masker import redact

    token = "async/only+token=42"
    sandbox.reset(metrika_tokens={token: [20001]})
    conn = add_connection("ym_async_mask", conn_type="yandexmetrika", host=sandbox.url, password=token)
    with pytest.raises(NotFoundError) as err:
        await MetrikaAsyncHook(conn, **FAST).get_calls_uploading(20001, 1)
    assert token not in str(err.value)
    assert redact(f"x {token} y") == "x *** y"
    assert redact(f"x {quote(token, safe='')} y") == "x *** y"


def test_async_hooks_build_on_the_providers_http_async_hook() -> None:
    from airflow.providers.http.hooks.http import HttpAsyncHook

    for hook in (CalltouchAsyncHook(), MetrikaAsyncHook()):
        assert isinstance(hook, HttpAsyncHook)
        # one provider attempt per call: the retry policy (429/Retry-After, 5xx, drops) is ours
        assert hook.retry_limit == 1
    assert CalltouchAsyncHook("ct_x").http_conn_id == "ct_x"
    assert MetrikaAsyncHook("ym_x").http_conn_id == "ym_x"


async def test_async_session_config_has_no_extras_as_headers_and_a_default_timeout(
    sandbox: Any, add_connection: Any
) -> None:
    conn = add_connection(
        "ct_async_extras",
        conn_type="calltouch",
        host=sandbox.url,
        password="sandbox-ct-token",
        extra={"site_id": 10001, "X-Leak": "extra-value"},
    )
    hook = CalltouchAsyncHook(conn)
    config = await hook.config()
    assert config.base_url == sandbox.url.rstrip("/")
    assert config.headers == {"User-Agent": "calltouch-metrika-airflow"}
    assert config.auth is None
    assert config.extra_options is not None
    assert config.extra_options["timeout"].total == 60.0  # the hook's default timeout
    assert config.extra_options["allow_redirects"] is False
    assert (await MetrikaAsyncHook(timeout=7.5).config()).extra_options["timeout"].total == 7.5


async def test_async_run_sends_our_auth_and_no_connection_extras(
    sandbox: Any, metrika: Any, add_connection: Any
) -> None:
    """Observed on the wire (aiohttp tracing): extras are not headers, the OAuth header is ours."""
    import aiohttp

    record = metrika().upload_calls(20001, calls_csv(), comment="async-run")
    conn = add_connection(
        "ym_async_extras",
        conn_type="yandexmetrika",
        host=sandbox.url,
        password="sandbox-ym-token",
        extra={"X-Leak": "extra-value", "counter_id": "20001"},
    )
    sent: list[dict[str, str]] = []

    async def on_request_start(session: Any, ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append(dict(params.headers))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    sandbox.faults(fail_5xx=1, scope="metrika")
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        response = await MetrikaAsyncHook(conn, **FAST).run(
            session=session,
            endpoint=f"/management/v1/counter/20001/offline_conversions/calls_uploading/{record['id']}",
        )
    assert response.status == 200
    assert (await response.json())["uploading"]["comment"] == "async-run"
    assert len(sent) == 2  # the 503 was retried by our policy
    for headers in sent:
        assert headers["Authorization"] == "OAuth sandbox-ym-token"
        assert "X-Leak" not in headers and "counter_id" not in headers
        assert "extra-value" not in headers.values()
