"""Yandex Metrika management API: offline calls upload, upload status and list (api-notes §3).

Auth is ``Authorization: OAuth <token>`` (``Bearer`` is accepted too): missing or unknown token ->
401 ``unauthorized``; a counter the token may not access -> 403 ``access_denied``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from sandbox.errors import JSONUtf8Response, metrika_error
from sandbox.generators import is_known_identifier
from sandbox.metrika_csv import MAX_BYTES, CsvError, parse_calls_csv
from sandbox.state import SandboxState, Upload, iso_utc

router = APIRouter()
PREFIX = "/management/v1/counter/{counter_id}"
CLIENT_ID_TYPES = ("CLIENT_ID", "USER_ID", "YCLID")


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def _auth(st: SandboxState, request: Request, counter_id: str) -> tuple[int, Response | None]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    counters = st.config.metrika_tokens.get(token.strip()) if scheme in ("OAuth", "Bearer") else None
    if counters is None:
        return 0, metrika_error(401, "unauthorized", "Unauthorized: a valid OAuth token is required")
    if not counter_id.isdigit():
        return 0, metrika_error(400, "invalid_parameter", f"Invalid counter id {counter_id!r}", "counterId")
    if int(counter_id) not in counters:
        return 0, metrika_error(403, "access_denied", f"Access to counter {counter_id} is denied")
    return int(counter_id), None


@router.post(PREFIX + "/offline_conversions/upload_calls")
async def upload_calls(counter_id: str, request: Request) -> Response:
    """Accept a calls CSV (multipart field ``file``), parse it strictly, store it."""
    st = _state(request)
    counter, error = _auth(st, request, counter_id)
    if error is not None:
        return error
    params = request.query_params
    comment = params.get("comment")
    if comment is not None and len(comment) > 255:
        return metrika_error(
            400, "invalid_parameter", "comment must be at most 255 characters long", "comment"
        )
    goal = params.get("new_goal_name")
    if goal is not None and (not goal.strip() or len(goal) > 255):
        return metrika_error(
            400, "invalid_parameter", "new_goal_name must be 1..255 characters long", "new_goal_name"
        )
    client_id_type = params.get("client_id_type")
    if client_id_type is not None and client_id_type not in CLIENT_ID_TYPES:
        return metrika_error(
            400,
            "invalid_parameter",
            "client_id_type must be one of CLIENT_ID, USER_ID, YCLID",
            "client_id_type",
        )
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return metrika_error(400, "missing_parameter", "Multipart field 'file' is required", "file")
    try:
        form = await request.form(max_part_size=MAX_BYTES + 1)
    except HTTPException as exc:  # malformed multipart body
        return metrika_error(400, "invalid_parameter", f"Malformed multipart body: {exc.detail}", "file")
    upload: Any = form.get("file")
    if upload is None:
        return metrika_error(400, "missing_parameter", "Multipart field 'file' is required", "file")
    data = await upload.read() if isinstance(upload, UploadFile) else str(upload).encode("utf-8")
    now = st.config.clock()
    now_ts = int(now.timestamp())
    try:
        parsed = parse_calls_csv(data, now_ts, client_id_type)
    except CsvError as exc:
        return metrika_error(400, "invalid_parameter", str(exc), exc.location)
    linked = any(
        is_known_identifier(parsed.client_id_type, row[parsed.identifier], now_ts)
        for row in parsed.valid_rows
    )
    linked_quantity = sum(
        1
        for row in parsed.valid_rows
        if row.get("StaticCall") != "1"
        and is_known_identifier(parsed.client_id_type, row[parsed.identifier], now_ts)
    )
    entry = Upload(
        id=st.next_upload_id,
        counter_id=counter,
        comment=comment,
        new_goal_name=goal,
        client_id_type=parsed.client_id_type,
        create_time=iso_utc(now),
        created_monotonic=time.monotonic(),
        source_quantity=len(parsed.rows),
        line_quantity=len(parsed.valid_rows),
        static_calls_quantity=parsed.static_calls,
        dynamic_calls_quantity=parsed.dynamic_calls,
        columns=parsed.columns,
        rows=parsed.rows,
        linked=linked,
        linked_quantity=linked_quantity,
    )
    st.next_upload_id += 1
    st.uploads.append(entry)
    return JSONUtf8Response({"uploading": entry.api_view(st.config.status_step_seconds, time.monotonic())})


@router.get(PREFIX + "/offline_conversions/calls_uploading/{uploading_id}")
async def calls_uploading(counter_id: str, uploading_id: str, request: Request) -> Response:
    """One upload, its status advanced lazily from its creation time."""
    st = _state(request)
    counter, error = _auth(st, request, counter_id)
    if error is not None:
        return error
    found = next(
        (
            u
            for u in st.uploads
            if uploading_id.isdigit() and u.id == int(uploading_id) and u.counter_id == counter
        ),
        None,
    )
    if found is None:
        return metrika_error(404, "not_found", f"Calls uploading {uploading_id} not found")
    return JSONUtf8Response({"uploading": found.api_view(st.config.status_step_seconds, time.monotonic())})


@router.get(PREFIX + "/offline_conversions/calls_uploadings")
async def calls_uploadings(counter_id: str, request: Request) -> Response:
    """The counter's uploads, newest first, ``limit`` (default 10000) from ``offset`` (default 0)."""
    st = _state(request)
    counter, error = _auth(st, request, counter_id)
    if error is not None:
        return error
    values: dict[str, int] = {}
    for name, default, lo in (("limit", 10_000, 1), ("offset", 0, 0)):
        raw = request.query_params.get(name)
        try:
            values[name] = default if raw is None else int(raw)
        except ValueError:
            values[name] = -1
        if values[name] < lo:
            return metrika_error(400, "invalid_parameter", f"{name} must be an integer >= {lo}", name)
    mine = [u for u in reversed(st.uploads) if u.counter_id == counter]
    chunk = mine[values["offset"] : values["offset"] + values["limit"]]
    now = time.monotonic()
    return JSONUtf8Response({"uploadings": [u.api_view(st.config.status_step_seconds, now) for u in chunk]})


@router.get(PREFIX)
async def counter_info(counter_id: str, request: Request) -> Response:
    """A minimal counter object (handy for connection tests)."""
    st = _state(request)
    counter, error = _auth(st, request, counter_id)
    if error is not None:
        return error
    return JSONUtf8Response(
        {
            "counter": {
                "id": counter,
                "name": f"Sandbox counter {counter}",
                "site": f"counter{counter}.example.ru",
                "status": "Active",
            }
        }
    )


@router.get("/management/v1/counters")
async def counters(request: Request) -> Response:
    """The counters the token may access (handy for connection tests)."""
    st = _state(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    ids = st.config.metrika_tokens.get(token.strip()) if scheme in ("OAuth", "Bearer") else None
    if ids is None:
        return metrika_error(401, "unauthorized", "Unauthorized: a valid OAuth token is required")
    rows = [
        {"id": c, "name": f"Sandbox counter {c}", "site": f"counter{c}.example.ru", "status": "Active"}
        for c in ids
    ]
    return JSONUtf8Response({"rows": len(rows), "counters": rows})
