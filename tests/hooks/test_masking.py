"""Secret masking (hooks/_masking.py): tokens in every form never reach logs, errors or Airflow's output."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from calltouch_metrika.exceptions import AuthenticationError, ServerError
from calltouch_metrika.hooks._masking import Secrets
from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.hooks.metrika import MetrikaHook
from tests.hooks.conftest import DAY, api_count, calls_csv

# Tokens with every character that URL-encoding changes, so that encoded forms differ from the raw one.
CT_TOKEN = "ct/Tok+en=Sp ace&x%41~"
YM_TOKEN = "ym/OAuth+tok=en&y"


def _variants(token: str) -> set[str]:
    return {token, quote(token, safe=""), quote(token), quote_plus(token)}


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


# ------------------------------------------------------- unusual forms: escaped, repr, a newline (issue 13 §5)

#: A token with what escaping changes: a line break, a tab, a quote, a backslash, non-ASCII.
ODD_TOKEN = 'odd"tok\\en\nLINE2-SECRET\tэ42'


def _escaped_forms(token: str) -> set[str]:
    import json

    return {
        repr(token)[1:-1],
        json.dumps(token)[1:-1],
        json.dumps(token, ensure_ascii=False)[1:-1],
        token.encode("unicode_escape").decode("ascii"),
    } | _variants(token)


def test_escaped_and_repr_forms_are_scrubbed_and_registered() -> None:
    from airflow.sdk._shared.secrets_masker import redact

    secrets = Secrets(ODD_TOKEN)
    for form in _escaped_forms(ODD_TOKEN):
        assert secrets.scrub(f"before {form} after") == "before *** after", form
        assert redact(f"before {form} after") == "before *** after", form
    # what an exception message that quotes a header shows (requests' InvalidHeader)
    assert "LINE2-SECRET" not in secrets.scrub(repr(f"OAuth {ODD_TOKEN}"))
    assert "LINE2-SECRET" not in secrets.scrub(str({"Authorization": f"OAuth {ODD_TOKEN}"}))


NEWLINE_TOKEN = "ym-first-line\nSECOND-LINE-SECRET-42"


def _leaks(text: str, token: str) -> list[str]:
    parts = [p for p in token.split("\n") if p] + sorted(_escaped_forms(token))
    return [p for p in parts if p in text]


def _everything_about(exc: BaseException) -> str:
    import traceback

    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def test_metrika_token_with_a_newline_never_leaks(
    sandbox: Any, add_connection: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The issue's example: today ``requests.exceptions.InvalidHeader: ... 'OAuth <token>'`` in the task log."""
    from airflow.sdk._shared.secrets_masker import redact

    conn = add_connection("ym_newline", conn_type="yandexmetrika", host=sandbox.url, password=NEWLINE_TOKEN)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError, match="control character") as err:
        MetrikaHook(conn).list_calls_uploadings(20001)
    out, err_out = capfd.readouterr()
    assert not _leaks(_everything_about(err.value) + caplog.text + out + err_out, NEWLINE_TOKEN)
    assert "ym_newline" in str(err.value)  # names the connection to fix
    assert api_count(sandbox.state(), "metrika") == 0  # refused before any request
    assert redact(f"x {repr(NEWLINE_TOKEN)[1:-1]} y") == "x *** y"  # registered, in its repr form too


def test_calltouch_token_with_a_newline_never_leaks(
    sandbox: Any, add_connection: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = "ct-first-line\r\nSECOND-LINE-SECRET-43"
    conn = add_connection(
        "ct_newline", conn_type="calltouch", host=sandbox.url, password=token, extra={"site_id": "10001"}
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError, match="control character") as err:
        CalltouchHook(conn).get_calls(DAY, DAY)
    assert not _leaks(_everything_about(err.value) + caplog.text, token.replace("\r", "\n"))
    assert api_count(sandbox.state(), "calltouch") == 0


async def test_async_hook_token_with_a_newline_never_leaks(sandbox: Any, add_connection: Any) -> None:
    from calltouch_metrika.hooks.metrika import MetrikaAsyncHook

    conn = add_connection(
        "ym_newline_async", conn_type="yandexmetrika", host=sandbox.url, password=NEWLINE_TOKEN
    )
    with pytest.raises(AuthenticationError, match="control character") as err:
        await MetrikaAsyncHook(conn).get_calls_uploading(20001, 1)
    assert not _leaks(_everything_about(err.value), NEWLINE_TOKEN)


def test_transport_refuses_an_invalid_header_without_quoting_it(sandbox: Any, metrika: Any) -> None:
    """Any header value requests refuses (InvalidHeader quotes it) becomes a typed error without the value."""
    from calltouch_metrika.exceptions import ValidationError

    secret = "-".join(["SECOND", "LINE", "SECRET", "44"])  # not spelled out: tracebacks quote source lines
    with pytest.raises(ValidationError, match="could not be sent: InvalidHeader") as err:
        metrika().run("/management/v1/counters", headers={"X-Note": "first\n" + secret})
    assert secret not in _everything_about(err.value)
    assert err.value.__suppress_context__  # the requests error (with the value) is not chained
    assert api_count(sandbox.state(), "metrika") == 0


def test_dag_test_output_at_info_has_no_secret(
    sandbox: Any,
    airflow_db: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``dag.test()`` (what ``airflow dags test`` runs) at INFO prints no form of either token.

    Its console output is not redacted (airflow3-notes §0.7), so this holds only because nothing of ours
    prints a token. At DEBUG, Airflow's in-process supervisor prints each value registered for masking
    (``Sending request ... MaskSecret(value=...)``): Airflow's alone, see README "Security notes".
    """
    import json
    import os

    from airflow.utils.state import DagRunState

    from tests.helpers import recent_day, run_dag, task_states, write_config

    assert os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO").upper() == "INFO"
    sandbox.reset(calltouch_tokens={CT_TOKEN: [10001]}, metrika_tokens={YM_TOKEN: [20001]})
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLTOUCH_DEFAULT",
        json.dumps(
            {
                "conn_type": "calltouch",
                "host": sandbox.url,
                "password": CT_TOKEN,
                "extra": {"site_id": "10001"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_METRIKA_DEFAULT",
        json.dumps({"conn_type": "yandexmetrika", "host": sandbox.url, "password": YM_TOKEN}),
    )
    write_config(tmp_path, monkeypatch)
    dr = run_dag("calltouch_calls_to_metrika__e2e", recent_day())
    out, err_out = capfd.readouterr()
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    assert "Extract summary" in out + err_out  # the task logs were captured
    for token in (CT_TOKEN, YM_TOKEN):
        assert not _leaks(out + err_out, token)
