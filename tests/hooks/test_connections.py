"""Connection types, connection forms and how hooks read their connections."""

from __future__ import annotations

from typing import Any

import pytest

from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.hooks.metrika import MetrikaHook
from tests.hooks.conftest import DAY, calls_csv

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
