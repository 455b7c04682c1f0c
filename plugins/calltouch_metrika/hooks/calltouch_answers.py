"""Shapes of Calltouch's answers (pure, no I/O): calls pages, the requests journal, plans-import status.

Each function reads one decoded JSON answer and either returns what the hook needs or raises
:class:`~calltouch_metrika.exceptions.MalformedResponseError` (retried by the transport as a garbled
answer) or :class:`~calltouch_metrika.exceptions.ValidationError`. ``what`` names the site in messages
(``"Calltouch site 123"``). Used by :mod:`calltouch_metrika.hooks.calltouch`; shapes per seeds 001 and 004.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from calltouch_metrika.exceptions import MalformedResponseError, ValidationError


def page_count(value: Any, name: str, where: str) -> int | None:
    """A page counter of a calls answer as an int (``None`` when absent); a non-integer one is malformed.

    Accepted: a JSON integer, an integral float (``2.0``) or a string of ASCII digits. Refused (the page
    cannot be trusted): ``1.9``, ``true``, ``-1``, ``"2a"``.
    """
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 0:
        raise MalformedResponseError(f"{where}: {name} {value!r} is not a non-negative integer")
    return number


def parse_calls_page(body: Any, day: date, page: int, *, what: str) -> tuple[list[Any], int, int | None]:
    """One calls answer -> ``(items, pageTotal, recordsTotal)``; :class:`MalformedResponseError` if it is odd.

    Items are passed on as they came: one that is not a JSON object (``null``, ``"x"``, ``5``), in the
    envelope as in bare-array mode, becomes a ``malformed_record`` reject of the calls transform, never
    a silent drop. An answer that cannot be a page of this day is malformed (so retried, as a garbled
    answer, by the transport): ``pageTotal``/``recordsTotal``/``page`` that are not non-negative integers
    (``1.9``, ``true``, ``-1``), a ``page`` other than the one asked for, an empty page while
    ``pageTotal`` says there are several, a page past ``pageTotal``, more records than ``recordsTotal``.
    """
    where = f"{what}, calls of {day}, page {page}"
    if isinstance(body, list):  # bare-array mode (no pagination): the whole day in one answer
        return list(body), 1, len(body)
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise MalformedResponseError(f"{where}: expected an object with 'records', got {type(body).__name__}")
    records = body["records"]
    page_total = page_count(body.get("pageTotal"), "pageTotal", where)
    records_total = page_count(body.get("recordsTotal"), "recordsTotal", where)
    answered = page_count(body.get("page"), "page", where)
    if answered is not None and answered != page:
        raise MalformedResponseError(f"{where}: the answer is page {answered}, not page {page}")
    page_total = page_total or 0  # pageTotal 0 (or absent) means "no records": never loop on it
    if not records and page_total >= 2:
        raise MalformedResponseError(f"{where}: the page is empty but pageTotal is {page_total}")
    if page > 1 and page > page_total:
        raise MalformedResponseError(f"{where}: the page is past pageTotal {page_total}")
    if records_total is not None and len(records) > records_total:
        raise MalformedResponseError(
            f"{where}: the page holds {len(records)} records but recordsTotal is {records_total}"
        )
    return records, max(page_total, 1 if records else 0), records_total


def parse_requests(body: Any, label: str, *, what: str) -> list[Any]:
    """The journal's array, every item as it came: one that is not an object becomes a
    ``malformed_record`` reject of :func:`~calltouch_metrika.transforms.requests.requests_to_table`."""
    if not isinstance(body, list):
        raise MalformedResponseError(
            f"{what}, requests {label}: expected a JSON array, got {type(body).__name__}"
        )
    return list(body)


def dumps(body: Any) -> str:
    """``body`` as JSON text (non-ASCII kept), for error messages."""
    return json.dumps(body, ensure_ascii=False)


def status_data(body: Any, what: str, import_log_id: int) -> dict:
    """The plans-import status answer's ``data`` (seed 001); it must hold ``status``.

    :raises ValidationError: the answer is a ``validationError``/``apiError``.
    :raises MalformedResponseError: any other answer without ``data.status``.
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or "status" not in data:
        if isinstance(data, dict) and data.get("type") in ("validationError", "apiError"):
            raise ValidationError(f"{what}: plans import {import_log_id}: {dumps(data)[:300]}")
        raise MalformedResponseError(
            f"{what}: plans import {import_log_id} status answered without data.status"
        )
    return data
