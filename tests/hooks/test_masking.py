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
    ym_conn = add_connection("ym_masked", conn_type="yandex_metrika", host=sandbox.url, password=YM_TOKEN)
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
