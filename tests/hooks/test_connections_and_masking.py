"""Connection types, connection forms, secret masking, the shared limiter and error parsing."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from calltouch_metrika.exceptions import (
    AuthenticationError,
    NotFoundError,
    ServerError,
    ValidationError,
)
from calltouch_metrika.hooks._http import Secrets, SlidingWindowLimiter, calltouch_error, metrika_error
from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.hooks.metrika import MetrikaHook
from tests.hooks.conftest import DAY, api_count, calls_csv, status_count

# Tokens with every character that URL-encoding changes, so that encoded forms differ from the raw one.
CT_TOKEN = "ct/Tok+en=Sp ace&x%41~"
YM_TOKEN = "ym/OAuth+tok=en&y"


def _variants(token: str) -> set[str]:
    return {token, quote(token, safe=""), quote(token), quote_plus(token)}


# ------------------------------------------------------------------------------------ registration


def test_provider_registers_both_connection_types() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks  # what Connection.get_hook() uses in a task
    assert "calltouch" in hooks and "yandexmetrika" in hooks
    assert hooks["calltouch"].hook_class_name == "calltouch_metrika.hooks.calltouch.CalltouchHook"
    assert hooks["yandexmetrika"].hook_class_name == "calltouch_metrika.hooks.metrika.MetrikaHook"


def test_provider_manager_sees_form_fields() -> None:
    """What the UI's connection form is built from (Airflow core's ProvidersManager)."""
    import warnings

    from airflow.providers_manager import ProvidersManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = ProvidersManager()
        assert {"calltouch", "yandexmetrika"} <= set(pm.hooks)
        widgets = pm.connection_form_widgets
        behaviours = pm.field_behaviours
    assert "extra__calltouch__site_id" in widgets
    assert behaviours["calltouch"]["relabeling"]["password"] == "API token"
    assert behaviours["yandexmetrika"]["relabeling"]["password"] == "OAuth token"


def test_provider_info_declares_form_fields_without_importing_airflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from calltouch_metrika.provider_info import get_provider_info as g; i = g(); "
        "assert 'airflow' not in sys.modules, 'provider_info imported airflow'; "
        "ct, ym, _old = i['connection-types']; "
        "assert ct['conn-fields']['site_id']['label'] == 'Site id'; "
        "assert ct['ui-field-behaviour']['relabeling']['password'] == 'API token'; "
        "assert ym['ui-field-behaviour']['relabeling']['password'] == 'OAuth token'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_connection_get_hook_returns_our_hooks(sandbox: Any) -> None:
    from airflow.sdk import Connection

    ct = Connection(conn_id="calltouch_default", conn_type="calltouch", host=sandbox.url, password="x" * 8)
    assert isinstance(ct.get_hook(), CalltouchHook)
    ym = Connection(conn_id="metrika_default", conn_type="yandexmetrika", host=sandbox.url, password="y" * 8)
    assert isinstance(ym.get_hook(), MetrikaHook)


# ------------------------------------------------------------------------------------ connection forms


ISSUE_CALLTOUCH = (
    '{"conn_type": "calltouch", "host": "https://api.calltouch.ru", "password": "<token>", '
    '"extra": {"site_id": "12345"}}'
)
ISSUE_METRIKA = (
    '{"conn_type": "yandexmetrika", "host": "https://api-metrika.yandex.net", "password": "<oauth token>"}'
)


def test_exact_issue_forms_work(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The AIRFLOW_CONN_* forms from the issue, verbatim but for host, token and site (the sandbox's)."""
    sandbox.reset(calltouch_tokens={"<token>": [12345]}, metrika_tokens={"<oauth token>": [20001]})
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLTOUCH_DEFAULT", ISSUE_CALLTOUCH.replace("https://api.calltouch.ru", sandbox.url)
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_METRIKA_DEFAULT", ISSUE_METRIKA.replace("https://api-metrika.yandex.net", sandbox.url)
    )
    hook = CalltouchHook()
    assert hook.site_id == 12345
    assert len(hook.get_calls(DAY, DAY)) == 150
    assert MetrikaHook().upload_calls(20001, calls_csv())["id"]


def test_http_conn_type_and_host_without_scheme(sandbox: Any, add_connection: Any) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    add_connection(
        "ct_http", conn_type="http", host=sandbox.url, password="sandbox-ct-token", extra={"site_id": "10001"}
    )
    assert len(CalltouchHook("ct_http").get_calls(DAY, DAY)) == 150
    add_connection(
        "ym_http", conn_type="http", host=host, port=int(port), schema="http", password="sandbox-ym-token"
    )
    assert MetrikaHook("ym_http").list_calls_uploadings(20001) == []


def test_extras_never_become_headers(sandbox: Any, add_connection: Any) -> None:
    add_connection(
        "ct_extras",
        conn_type="calltouch",
        host=sandbox.url,
        password="sandbox-ct-token",
        extra={"site_id": "10001", "X-Leak": "secret-header", "timeout": "0.000001"},
    )
    hook = CalltouchHook("ct_extras")
    session = hook.get_conn()
    assert "X-Leak" not in session.headers and session.auth is None
    assert len(hook.get_calls(DAY, DAY)) == 150  # the extra "timeout" is not applied either


# -------------------------------------------------------------------------------------------- masking


def test_tokens_never_reach_logs_or_errors(
    sandbox: Any, add_connection: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Checked on stdlib log records (caplog) and on the console output of Airflow's structlog loggers."""
    from airflow.sdk._shared.secrets_masker import redact

    sandbox.reset(calltouch_tokens={CT_TOKEN: [10001]}, metrika_tokens={YM_TOKEN: [20001]})
    ct_conn = add_connection(
        "ct_masked", conn_type="calltouch", host=sandbox.url, password=CT_TOKEN, extra={"site_id": "10001"}
    )
    ym_conn = add_connection("ym_masked", conn_type="yandexmetrika", host=sandbox.url, password=YM_TOKEN)
    fast = {"retry_wait_min": 0.01, "retry_wait_max": 0.02, "retry_after_max": 0.05}
    messages: list[str] = []
    caplog.set_level(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        ct = CalltouchHook(ct_conn, **fast)
        sandbox.faults(fail_5xx=1, burst_429=1)
        assert len(ct.get_calls(DAY, DAY)) == 150  # with a retried 503 and 429 logged on the way
        ct.plans_import_status(ct.plans_import_add(
            [{"dateFrom": "01-04-2021", "dateTo": "01-04-2021", "source": "y",
              "metric": {"type": "Лиды", "name": "Уникальные лиды", "value": 1}}]
        ))  # fmt: skip
        sandbox.faults(fail_5xx=5)
        with pytest.raises(ServerError) as err:
            CalltouchHook(ct_conn, max_attempts=2, **fast).get_requests(DAY, DAY)
        messages.append(str(err.value))
        with pytest.raises(AuthenticationError) as err:
            CalltouchHook(ct_conn, site_id=10002, **fast).get_calls(DAY, DAY)
        messages.append(str(err.value))
        sandbox.faults()
        ym = MetrikaHook(ym_conn, **fast)
        ym.get_calls_uploading(20001, ym.upload_calls(20001, calls_csv())["id"])
        with pytest.raises(AuthenticationError) as err:
            ym.get_calls_uploading(20002, 1)
        messages.append(str(err.value))
        assert CalltouchHook(ct_conn, **fast).test_connection()[0]
    out, err_out = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text + out + err_out
    # the test can fail: urllib3 logged the request lines at DEBUG, with the token scrubbed
    assert "clientApiId=***" in logged
    assert "HTTP 503" in logged and "retrying in" in logged  # the hook's own retry warnings were captured
    for token in (CT_TOKEN, YM_TOKEN):
        for variant in _variants(token):
            assert variant not in logged, f"token form {variant!r} logged"
            for message in messages:
                assert variant not in message
            # every form is registered with Airflow's masker
            assert redact(f"before {variant} after") == "before *** after"
    assert api_count(sandbox.state(), "calltouch") > 0


def test_secrets_scrub_every_encoding() -> None:
    secrets = Secrets(CT_TOKEN)
    text = " | ".join(sorted(_variants(CT_TOKEN))) + f" | https://x/y?clientApiId={quote_plus(CT_TOKEN)}&a=1"
    scrubbed = secrets.scrub(text)
    assert all(v not in scrubbed for v in _variants(CT_TOKEN))
    assert "a=1" in scrubbed


# ----------------------------------------------------------------------------------------- limiter


def test_limiter_never_admits_more_than_n_in_any_window() -> None:
    limiter = SlidingWindowLimiter(3, window=0.1)

    def worker() -> None:
        for _ in range(4):
            limiter.acquire()
            limiter.release()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts = sorted(limiter.history)
    assert len(starts) == 20
    assert all(starts[i + 3] - starts[i] >= 0.1 for i in range(len(starts) - 3))


async def test_limiter_async_respects_window_and_parallel_cap() -> None:
    import asyncio

    limiter = SlidingWindowLimiter(4, window=0.1, max_in_flight=2)
    in_flight = 0
    peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        await limiter.aacquire()
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        limiter.release()

    await asyncio.gather(*(one() for _ in range(12)))
    starts = sorted(limiter.history)
    assert len(starts) == 12 and peak <= 2
    assert all(starts[i + 4] - starts[i] >= 0.1 for i in range(len(starts) - 4))


def test_limiter_is_shared_by_hooks_of_one_host(sandbox: Any) -> None:
    a, b = CalltouchHook(), CalltouchHook(site_id=10002)
    assert a.transport.limiter is b.transport.limiter
    assert a.transport.limiter is not MetrikaHook().transport.limiter
    a.get_calls(DAY, DAY)
    b.get_calls(DAY, DAY)
    starts = sorted(a.transport.limiter.history)
    assert all(starts[i + 5] - starts[i] >= 1.0 for i in range(len(starts) - 5))


def test_parallel_extraction_stays_within_the_window(sandbox: Any, calltouch: Any) -> None:
    """3 days x 2001 calls: 9 pages fetched concurrently, never more than 5 starts per window."""
    sandbox.reset(volume_overrides={f"10001:2026-11-{d}": 2001 for d in (18, 19, 20)})
    hook = calltouch()
    before = len(hook.transport.limiter.history)
    assert len(hook.get_calls("2026-11-18", "2026-11-20")) == 3 * 2001
    starts = sorted(list(hook.transport.limiter.history)[before:])
    # 9 pages; a 429 is possible when the sandbox stamps queued requests late, and is retried
    assert len(starts) >= 9
    assert status_count(sandbox.state(), "200") == 9
    window = hook.transport.limiter.window
    assert all(starts[i + 5] - starts[i] >= window for i in range(len(starts) - 5))


# ---------------------------------------------------------------------------------- error parsing


SEED_001 = {
    "auth": ({"message": "Access token не найден"}, AuthenticationError),
    "api": (
        {"meta": [], "data": {"type": "apiError", "apiErrorData": {"errorCode": 1, "errorMessage":
         "Синтаксическая ошибка JSON в запросе или запрос пустой", "errorDescription": None},
         "validationErrorData": None}},
        ValidationError,
    ),
    "violations": (
        {"meta": [], "data": {"type": "validationError", "apiErrorData": None, "validationErrorData": {
            "violations": [{"fieldPath": "items[0].source", "message": "Должно быть заполнено"},
                           {"fieldPath": "items", "message": "Эта коллекция должна содержать 1 элемент или больше."}]}}},
        ValidationError,
    ),
    "missing": ({"meta": [], "data": {"message": 'В запросе не указано обязательное поле "dateTo"'}}, ValidationError),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SEED_001))
def test_calltouch_seed_001_bodies(case: str) -> None:
    body, kind = SEED_001[case]
    status = 401 if case == "auth" else 400
    err = calltouch_error(
        status, json.dumps(body, ensure_ascii=False), what="Calltouch site 1", secrets=Secrets()
    )
    assert type(err) is kind
    assert "Calltouch site 1" in str(err)
    if case == "violations":
        assert err.violations[0] == ("items[0].source", "Должно быть заполнено")
        assert "items: Эта коллекция" in str(err)
    if case == "missing":
        assert '"dateTo"' in str(err)


def test_metrika_error_bodies() -> None:
    body = {"errors": [{"error_type": "invalid_parameter", "message": "bad", "location": "file"}],
            "code": 400, "message": "bad"}  # fmt: skip
    err = metrika_error(400, json.dumps(body), what="Metrika counter 5", secrets=Secrets())
    assert isinstance(err, ValidationError) and err.violations == [("file", "invalid_parameter: bad")]
    assert isinstance(metrika_error(404, "{}", what="m", secrets=Secrets()), NotFoundError)
    auth = metrika_error(401, '{"message": "no"}', what="Metrika counter 5", secrets=Secrets())
    assert isinstance(auth, AuthenticationError) and "counter 5" in str(auth)
