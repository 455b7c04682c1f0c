"""Answers of an odd shape (issue 13 §2/§4, issue 16; /work/wt/findings.md items 6 and 10).

The sandbox answers as the APIs are documented, so these shapes come from a small scripted HTTP
server on loopback: the hooks talk to it over real HTTP, exactly as to the sandbox. Each answer that
cannot be trusted is a garbled answer: retried within the policy, then ``MalformedResponseError``;
never a partial day, a silent drop, a bare ``ValueError`` or a record a sensor would poll until its
timeout. Each example failed before the fix.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from calltouch_metrika.exceptions import MalformedResponseError
from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.hooks.metrika import MetrikaAsyncHook, MetrikaHook
from calltouch_metrika.transforms.calls import TransformOptions, calls_to_metrika
from calltouch_metrika.transforms.records import calls_to_table
from calltouch_metrika.transforms.requests import RequestReject, requests_to_table
from tests.hooks.conftest import FAST

DAY = date(2026, 11, 20)
_NOW = datetime(2026, 11, 21, tzinfo=UTC)
ATTEMPTS = 3

#: (path, page or None) -> the answers to give, in order; the last one is repeated
Script = dict[tuple[str, int | None], list[Any]]


class _Server:
    """A loopback HTTP server answering from a script and counting the requests per (path, page)."""

    def __init__(self) -> None:
        self.script: Script = {}
        self.hits: dict[tuple[str, int | None], int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                page = parse_qs(url.query).get("page", [None])[0]
                key = (url.path.rsplit("/", 1)[-1], int(page) if page else None)
                with server.lock:
                    server.hits[key] = server.hits.get(key, 0) + 1
                    answers = server.script.get(key) or server.script.get((key[0], None)) or [{"error": "?"}]
                    answer = answers.pop(0) if len(answers) > 1 else answers[0]
                body = json.dumps(answer).encode()
                self.send_response(200 if answers != [{"error": "?"}] else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, name: str, *answers: Any, page: int | None = None) -> None:
        self.script[(name, page)] = list(answers)

    def count(self, name: str, page: int | None = None) -> int:
        return self.hits.get((name, page), 0)


@pytest.fixture
def server(add_connection: Callable[..., str]) -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    add_connection(
        "shapes_ct", conn_type="calltouch", host=srv.url, password="shapes-ct-token", extra={"site_id": 1}
    )
    add_connection("shapes_ym", conn_type="yandex_metrika", host=srv.url, password="shapes-ym-token")
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        thread.join(5)


def _calltouch() -> CalltouchHook:
    return CalltouchHook("shapes_ct", max_attempts=ATTEMPTS, timeout=5.0, **FAST)


def _metrika() -> MetrikaHook:
    return MetrikaHook("shapes_ym", max_attempts=ATTEMPTS, timeout=5.0, **FAST)


def _call(i: int) -> dict[str, Any]:
    return {"callId": i, "timestamp": 1763600000 + i, "yaClientId": "1732000000123456789"}


def _page(records: list[Any], page: int, page_total: Any, records_total: Any) -> dict[str, Any]:
    return {
        "page": page,
        "pageTotal": page_total,
        "pageSize": 1000,
        "recordsTotal": records_total,
        "records": records,
    }


# ------------------------------------------------------------------ calls pages


def test_an_empty_page_while_page_total_says_more_fails_the_day_after_retries(server: _Server) -> None:
    """Before: get_calls returned 1 of 2 records with a warning; the day was uploaded as complete."""
    server.answer("calls", _page([_call(1)], 1, 2, 2), page=1)
    server.answer("calls", _page([], 2, 2, 2), page=2)
    with pytest.raises(MalformedResponseError, match=r"page 2: the page is empty but pageTotal is 2"):
        _calltouch().get_calls(DAY, DAY)
    assert server.count("calls", 2) == ATTEMPTS  # retried like a garbled answer


def test_an_empty_page_once_is_retried_and_the_day_completes(server: _Server) -> None:
    server.answer("calls", _page([_call(1)], 1, 2, 2), page=1)
    server.answer("calls", _page([], 2, 2, 2), _page([_call(2)], 2, 2, 2), page=2)
    assert [r["callId"] for r in _calltouch().get_calls(DAY, DAY)] == [1, 2]


@pytest.mark.parametrize("bad", [1.9, "1.9", True, -1, "2a", [2]])
@pytest.mark.parametrize("field", ["pageTotal", "recordsTotal", "page"])
def test_a_counter_that_is_not_a_non_negative_integer_is_malformed(
    server: _Server, field: str, bad: Any
) -> None:
    """Before: pageTotal 1.9 became int 1 and page 2 was never fetched."""
    answer = _page([_call(1)], 1, 1, 1)
    answer[field] = bad
    server.answer("calls", answer, page=1)
    with pytest.raises(MalformedResponseError, match=field):
        _calltouch().get_calls(DAY, DAY)
    assert server.count("calls", 1) == ATTEMPTS


def test_integral_counters_in_other_spellings_are_accepted(server: _Server) -> None:
    server.answer("calls", {**_page([_call(1)], 1, 1, 1), "pageTotal": 1.0, "recordsTotal": "1"}, page=1)
    assert len(_calltouch().get_calls(DAY, DAY)) == 1


def test_pages_that_do_not_add_up_to_records_total_are_read_again_then_fail(server: _Server) -> None:
    server.answer("calls", _page([_call(1)], 1, 1, 2), page=1)
    with pytest.raises(MalformedResponseError, match=r"recordsTotal says 2 calls but the pages held 1"):
        _calltouch().get_calls(DAY, DAY)
    assert server.count("calls", 1) == ATTEMPTS  # the day read again, within the policy


def test_a_day_that_adds_up_on_a_second_reading_is_used(server: _Server) -> None:
    server.answer("calls", _page([_call(1)], 1, 1, 2), _page([_call(1), _call(2)], 1, 1, 2), page=1)
    assert [r["callId"] for r in _calltouch().get_calls(DAY, DAY)] == [1, 2]


def test_another_page_than_asked_is_malformed(server: _Server) -> None:
    server.answer("calls", _page([_call(1)], 1, 2, 2), page=1)
    server.answer("calls", _page([_call(1)], 1, 2, 2), page=2)
    with pytest.raises(MalformedResponseError, match="the answer is page 1, not page 2"):
        _calltouch().get_calls(DAY, DAY)


@pytest.mark.parametrize("mode", ["bare", "envelope"])
def test_non_object_items_reach_the_transform_as_malformed_record_rejects(server: _Server, mode: str) -> None:
    """Before: bare-array mode dropped null/"x"/5 silently (extracted 2, not 5)."""
    items = [_call(1), None, "x", 5, _call(2)]
    server.answer("calls", items if mode == "bare" else _page(items, 1, 1, 5), page=1)
    records = _calltouch().get_calls(DAY, DAY)
    assert records == items
    result = calls_to_metrika(calls_to_table(records), TransformOptions(site_id=1), now=_NOW)
    assert result.counts.extracted == 5
    assert result.counts.rejects_by_reason.get("malformed_record") == 3


# ------------------------------------------------------------------ requests journal


def test_requests_non_object_items_become_counted_rejects(server: _Server) -> None:
    """Before: the hook dropped them silently; requests_to_table with a None failed the whole day."""
    server.answer("requests", [{"requestId": 1}, None, "x", 5, {"requestId": 2}])
    records = _calltouch().get_requests(DAY, DAY)
    assert len(records) == 5
    rejects: list[RequestReject] = []
    table = requests_to_table(records, rejects=rejects)
    assert table.column("request_id").to_pylist() == [1, 2]
    assert [(r.index, r.reason) for r in rejects] == [
        (1, "malformed_record"),
        (2, "malformed_record"),
        (3, "malformed_record"),
    ]


def test_requests_answer_that_is_not_an_array_is_retried_then_malformed(server: _Server) -> None:
    server.answer("requests", {"records": []})
    with pytest.raises(MalformedResponseError, match="expected a JSON array"):
        _calltouch().get_requests(DAY, DAY)
    assert server.count("requests") == ATTEMPTS


# ------------------------------------------------------------------ Metrika answers


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "abc", "comment": "c"}, "item 0 of 'uploadings' has no positive integer id"),
        ({"id": 1.5, "comment": "c"}, "no positive integer id"),
        ({"id": True, "comment": "c"}, "no positive integer id"),
        ({"comment": "c"}, "no positive integer id"),
        ("c", "item 0 of 'uploadings' is not an object"),
    ],
)
def test_uploads_list_item_of_a_bad_shape_is_a_typed_error(server: _Server, item: Any, message: str) -> None:
    """Before: {"id": "abc"} raised a bare ValueError from int(); a non-object item was dropped."""
    server.answer(
        "calls_uploadings", {"uploadings": [item, {"id": 1, "comment": "c", "status": "PROCESSED"}]}
    )
    with pytest.raises(MalformedResponseError, match=message):
        _metrika().find_calls_uploading(20001, comment="c")
    assert server.count("calls_uploadings") == ATTEMPTS


def test_uploads_list_ids_given_as_digit_strings_are_read_as_integers(server: _Server) -> None:
    server.answer(
        "calls_uploadings",
        {
            "uploadings": [
                {"id": "7", "comment": "c", "create_time": "t"},
                {"id": 12, "comment": "c", "create_time": "t"},
            ]
        },
    )
    assert _metrika().find_calls_uploading(20001, comment="c")["id"] == 12


@pytest.mark.parametrize(
    "answer",
    [
        {"uploading": {"id": 1}},
        {"uploading": {"id": 1, "status": None}},
        {"uploading": {"id": 1, "status": ""}},
        {"uploading": {"id": "x", "status": "PROCESSED"}},
        {"uploading": None},
        [{"id": 1, "status": "PROCESSED"}],
    ],
)
def test_an_upload_record_without_status_is_retried_then_malformed(server: _Server, answer: Any) -> None:
    """Before: {"uploading": {"id": 1}} was returned as is and the sensor polled it until its timeout."""
    server.answer("1", answer)
    with pytest.raises(MalformedResponseError):
        _metrika().get_calls_uploading(20001, 1)
    assert server.count("1") == ATTEMPTS


def test_an_upload_record_without_status_once_is_retried(server: _Server) -> None:
    server.answer("1", {"uploading": {"id": 1}}, {"uploading": {"id": 1, "status": "PROCESSED"}})
    assert _metrika().get_calls_uploading(20001, 1)["status"] == "PROCESSED"


async def test_the_async_hook_refuses_a_shapeless_upload_record_too(server: _Server) -> None:
    server.answer("1", {"uploading": {"id": 1}})
    hook = MetrikaAsyncHook("shapes_ym", max_attempts=ATTEMPTS, timeout=5.0, **FAST)
    with pytest.raises(MalformedResponseError, match="has no status"):
        await hook.get_calls_uploading(20001, 1)
    assert server.count("1") == ATTEMPTS
