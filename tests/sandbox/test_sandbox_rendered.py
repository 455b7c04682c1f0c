"""The pre-rendered calls path (sandbox/render.py) answers byte for byte what the record path gives.

The calls diary serves cached per-call JSON bytes joined into the envelope. The reference here is the
plain path that still exists beside it: :func:`sandbox.calltouch.select_calls` (generation, "now",
session binding, filters) and :func:`sandbox.calltouch.project_call` (attribution, blocks, extra fields)
on an in-process :class:`~sandbox.state.SandboxState` with the same config, serialised the way
:class:`sandbox.errors.JSONUtf8Response` does. The server is queried over real HTTP; ``now`` is frozen so
"today" (a partial day) is the same on both sides.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pytest
import requests

from sandbox.calltouch import CALL_BLOCK_FLAGS, CALL_FILTERS, project_call, select_calls
from sandbox.state import SandboxState
from tests.sandbox.conftest import CT_TOKEN

pytestmark = pytest.mark.integration

SITE = 10001
CONFIG: dict[str, Any] = {
    "calltouch_rps": 1000,
    "now": "2026-11-20T12:34:56+03:00",  # mid-day: 20/11 is "today", served up to 12:34:56 local
    "volume_overrides": {f"{SITE}:2026-11-18": 1234, f"{SITE}:2026-11-16": 0},
}
EVERY_BLOCK = {flag: "true" for flag in CALL_BLOCK_FLAGS}

#: (dateFrom, dateTo, extra query): flags, filters, attribution, binding, pages, today, empty days.
CASES: list[tuple[str, str, dict[str, str]]] = [
    ("19/11/2026", "19/11/2026", {}),
    ("19/11/2026", "19/11/2026", {"attribution": "0", "withCallTags": "true", "withOrders": "true"}),
    ("19/11/2026", "19/11/2026", {"attribution": "1", "withText": "true", "withDcm": "true"}),
    ("17/11/2026", "17/11/2026", {**EVERY_BLOCK, "withCallbackInfo": "true", "withText": "1"}),
    ("20/11/2026", "20/11/2026", {}),  # today: only the calls up to "now"
    ("20/11/2026", "20/11/2026", {"attribution": "0", "withComments": "on", "page": "1", "limit": "7"}),
    ("16/11/2026", "16/11/2026", {}),  # a day without calls
    ("18/11/2026", "18/11/2026", {"page": "1", "limit": "1000"}),
    ("18/11/2026", "18/11/2026", {"page": "2", "limit": "1000", "withMapVisits": "true"}),
    ("18/11/2026", "18/11/2026", {"page": "3", "limit": "1000"}),  # past the last page: no records
    ("14/11/2026", "20/11/2026", {"page": "4", "limit": "300", "uniqueOnly": "true"}),
    ("15/11/2026", "19/11/2026", {"page": "2", "limit": "500", "targetOnly": "1", "callbackOnly": "0"}),
    ("14/11/2026", "19/11/2026", {"limit": "1000", "uniqTargetOnly": "true", "attribution": "1"}),
    ("15/11/2026", "17/11/2026", {"bindTo": "session", "page": "1", "limit": "1000"}),
    (
        "17/11/2026",
        "18/11/2026",
        {"bindTo": "session", "page": "2", "limit": "500", "withYandexDirect": "true"},
    ),
    ("19/11/2026", "20/11/2026", {"bindTo": "session", "limit": "1000", "targetOnly": "true"}),
    ("20/11/2026", "20/11/2026", {"bindTo": "session", "withGoogleAdwords": "true"}),
    ("21/11/2026", "22/11/2026", {"page": "1", "limit": "10"}),  # the future: nothing yet
]


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in {"true", "1", "yes", "on"}


def _dmy(text: str) -> date:
    d, m, y = (int(part) for part in text.split("/"))
    return date(y, m, d)


def reference_body(state: SandboxState, date_from: str, date_to: str, query: dict[str, str]) -> bytes:
    """The answer as the record path builds it: select, project each call, serialise the document."""
    cfg = state.config
    filters = [field for name, field in CALL_FILTERS.items() if _truthy(query.get(name))]
    blocks = [block for name, block in CALL_BLOCK_FLAGS.items() if _truthy(query.get(name))]
    extra: dict[str, Any] = {}
    if _truthy(query.get("withText")):
        extra.update(phrases=[], phonesInText=[])
    if _truthy(query.get("withDcm")):
        extra["dcm"] = []
    if _truthy(query.get("withCallbackInfo")):
        extra["callbackInfo"] = None
    attribution = int(query["attribution"]) if "attribution" in query else None
    records = select_calls(state, SITE, _dmy(date_from), _dmy(date_to), query.get("bindTo", "call"), filters)
    seed = str(cfg.seed)

    def project(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [project_call(seed, r, attribution, blocks, extra, cfg.site_timezone) for r in chunk]

    if "page" not in query and "limit" not in query:
        doc: Any = project(records)
    else:
        page, limit = int(query.get("page", 1)), int(query.get("limit", 1000))
        doc = {
            "page": page,
            "pageTotal": (len(records) + limit - 1) // limit,
            "pageSize": limit,
            "recordsTotal": len(records),
            "records": project(records[(page - 1) * limit : page * limit]),
        }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@pytest.fixture(scope="module")
def reference() -> SandboxState:
    """An in-process sandbox state with the served config (calls are a pure function of it)."""
    return SandboxState(CONFIG)


@pytest.fixture
def served(api: Any) -> Any:
    """The session's sandbox with :data:`CONFIG`."""
    api.reset(**CONFIG)
    return api


def _get(urls: Any, date_from: str, date_to: str, query: dict[str, str]) -> requests.Response:
    params = {"clientApiId": CT_TOKEN, "dateFrom": date_from, "dateTo": date_to, **query}
    return requests.get(urls.calls(SITE), params=params, timeout=60)


@pytest.mark.parametrize(("date_from", "date_to", "query"), CASES)
def test_rendered_answer_is_byte_identical_to_the_record_path(
    served: Any, urls: Any, reference: SandboxState, date_from: str, date_to: str, query: dict[str, str]
) -> None:
    expected = reference_body(reference, date_from, date_to, query)
    first = _get(urls, date_from, date_to, query)  # builds the rendered day(s)
    again = _get(urls, date_from, date_to, query)  # served from the rendered cache
    assert first.status_code == 200, first.text[:300]
    assert first.headers["content-type"].startswith("application/json")
    assert first.content == expected
    assert again.content == expected
    assert json.loads(first.content) is not None  # and it is valid JSON


def test_concurrent_projections_of_one_day_do_not_mix(
    served: Any, urls: Any, reference: SandboxState
) -> None:
    """Different projections of the same uncached day built at once each get their own bytes."""
    served.reset(**{**CONFIG, "seed": "render-concurrency"})
    state = SandboxState({**CONFIG, "seed": "render-concurrency"})
    queries = [
        {},
        {"attribution": "0"},
        {"attribution": "1", **EVERY_BLOCK},
        {"withText": "true", "withDcm": "true", "withCallbackInfo": "true"},
    ] * 2
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        bodies = list(pool.map(lambda q: _get(urls, "19/11/2026", "19/11/2026", q).content, queries))
    for query, body in zip(queries, bodies, strict=True):
        assert body == reference_body(state, "19/11/2026", "19/11/2026", query)
    assert len(set(bodies)) == 4
