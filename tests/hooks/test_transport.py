"""The shared transport (hooks/_transport.py) against the sandbox: transient answers that must be retried.

Issue 13 §4: a non-JSON ``200`` (the sandbox's ``garbled_body`` fault) to an idempotent request is
transient, like a 503 or a truncated body: retried within the policy, then ``MalformedResponseError``.
A non-idempotent POST (an upload, a plans import) keeps its outcome-unknown semantics.
"""

from __future__ import annotations

from typing import Any

import pytest

from calltouch_metrika.exceptions import MalformedResponseError, OutcomeUnknownError
from calltouch_metrika.hooks.calltouch import CalltouchAsyncHook
from calltouch_metrika.hooks.metrika import MetrikaAsyncHook
from tests.helpers import SEED_BODY_ITEMS
from tests.hooks.conftest import DAY, FAST, api_count, calls_csv, status_count

pytestmark = pytest.mark.integration

COUNTER = 20001
PLAN_ITEM = SEED_BODY_ITEMS[0]  # seed 001's first item


def garbled(state: dict[str, Any]) -> int:
    return status_count(state, "garbled")


# -------------------------------------------------------------------------- garbled 200 to a GET: retried


def test_garbled_calltouch_page_is_retried(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(garbled_body=2, scope="calltouch")
    assert len(calltouch().get_calls(DAY, DAY)) == 150
    state = sandbox.state()
    assert garbled(state) == 2 and api_count(state, "calltouch") == 3


def test_garbled_calltouch_pages_every_time_is_malformed_response(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(garbled_body=50, scope="calltouch")
    with pytest.raises(MalformedResponseError, match=r"not JSON .* after 3 attempt\(s\)") as err:
        calltouch(max_attempts=3).get_calls(DAY, DAY)
    assert "Calltouch site 10001" in str(err.value) and "clientApiId" not in str(err.value)
    assert api_count(sandbox.state(), "calltouch") == 3


def test_garbled_requests_journal_is_retried(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(garbled_body=1, scope="calltouch")
    assert isinstance(calltouch().get_requests(DAY, DAY), list)
    assert garbled(sandbox.state()) == 1


def test_garbled_uploads_list_is_retried(sandbox: Any, metrika: Any) -> None:
    hook = metrika()
    hook.upload_calls(COUNTER, calls_csv(), comment="listed")
    sandbox.faults(garbled_body=2, scope="metrika")
    found = hook.find_calls_uploading(COUNTER, comment="listed")
    assert found is not None and found["comment"] == "listed"
    assert garbled(sandbox.state()) == 2


def test_garbled_upload_status_is_retried_then_malformed(sandbox: Any, metrika: Any) -> None:
    hook = metrika()
    record = hook.upload_calls(COUNTER, calls_csv())
    sandbox.faults(garbled_body=1, scope="metrika")
    assert hook.get_calls_uploading(COUNTER, record["id"])["id"] == record["id"]
    sandbox.faults(garbled_body=9, scope="metrika")
    with pytest.raises(MalformedResponseError, match=r"not JSON .* after 2 attempt\(s\)"):
        metrika(max_attempts=2).get_calls_uploading(COUNTER, record["id"])


def test_garbled_plans_status_is_retried(sandbox: Any, calltouch: Any) -> None:
    hook = calltouch()
    import_id = hook.plans_import_add([PLAN_ITEM])
    sandbox.faults(garbled_body=1, scope="calltouch")
    assert hook.plans_import_status(import_id)["status"] in ("in progress...", "success")
    assert garbled(sandbox.state()) == 1


async def test_garbled_status_checks_of_triggers_are_retried(
    sandbox: Any, metrika: Any, calltouch: Any
) -> None:
    record = metrika().upload_calls(COUNTER, calls_csv(), comment="async")
    import_id = calltouch().plans_import_add([PLAN_ITEM])
    sandbox.faults(garbled_body=1, scope="metrika")
    got = await MetrikaAsyncHook(**FAST).get_calls_uploading(COUNTER, record["id"])
    assert got["id"] == record["id"]
    sandbox.faults(garbled_body=1, scope="calltouch")
    data = await CalltouchAsyncHook(**FAST).plans_import_status(import_id)
    assert data["status"] in ("in progress...", "success")
    assert garbled(sandbox.state()) == 2
    sandbox.faults(garbled_body=9, scope="metrika")
    with pytest.raises(MalformedResponseError, match=r"not JSON .* after 2 attempt\(s\)"):
        await MetrikaAsyncHook(**{**FAST, "max_attempts": 2}).get_calls_uploading(COUNTER, record["id"])


# ----------------------------------------------------------- garbled 200 to a POST: outcome unknown, once


def test_garbled_upload_answer_is_outcome_unknown_and_not_resent(sandbox: Any, metrika: Any) -> None:
    sandbox.faults(garbled_body=1, scope="metrika")
    with pytest.raises(OutcomeUnknownError, match="look it up"):
        metrika().upload_calls(COUNTER, calls_csv(), comment="garbled-upload")
    state = sandbox.state()
    assert len(state["uploads"]) == 1 and api_count(state, "metrika") == 1


def test_garbled_plans_import_answer_is_outcome_unknown_and_not_resent(sandbox: Any, calltouch: Any) -> None:
    sandbox.faults(garbled_body=1, scope="calltouch")
    with pytest.raises(OutcomeUnknownError):
        calltouch().plans_import_add([PLAN_ITEM])
    assert api_count(sandbox.state(), "calltouch") == 1
