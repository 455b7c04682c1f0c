"""Yandex Metrika management API: offline calls upload, upload status and list (api-notes §3).

Auth is ``Authorization: OAuth <token>`` (the scheme in any case; ``Bearer`` is accepted too): no token -> 401 ``unauthorized``;
an unknown token -> 403 ``invalid_token`` (Metrika's error reference, api-notes §3.5); a counter the token
may not access -> 403 ``access_denied``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from sandbox.errors import JSONUtf8Response, injected_error, metrika_error
from sandbox.generators import is_known_identifier
from sandbox.metrika_csv import MAX_BYTES, CsvError, parse_calls_csv
from sandbox.params import metrika_token, parse_id
from sandbox.state import SandboxState, Upload, iso_utc

router = APIRouter(dependencies=[Depends(injected_error)])
PREFIX = "/management/v1/counter/{counter_id}"
CLIENT_ID_TYPES = ("CLIENT_ID", "USER_ID", "YCLID")


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def _token_counters(st: SandboxState, request: Request) -> tuple[list[int] | None, Response | None]:
    """The counters of the request's token, or the auth error: 401 without a token, 403 for an unknown one."""
    token = metrika_token(request.headers.get("Authorization"))
    if not token:
        return None, metrika_error(401, "unauthorized", "Unauthorized: an OAuth token is required")
    counters = st.config.metrika_tokens.get(token)
    if counters is None:
        return None, metrika_error(403, "invalid_token", "Invalid oauth_token")
    return counters, None


def _auth(st: SandboxState, request: Request, counter_id: str) -> tuple[int, Response | None]:
    counters, error = _token_counters(st, request)
    if counters is None:
        return 0, error
    counter = parse_id(counter_id)
    if counter is None:
        return 0, metrika_error(
            400, "invalid_parameter", f"Invalid counter id {counter_id[:40]!r}", "counterId"
        )
    if counter not in counters:
        return 0, metrika_error(403, "access_denied", f"Access to counter {counter} is denied")
    return counter, None


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
    goal = params.get("new_goal_name") or None  # empty = not given (sandbox/README.md)
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
    threshold = _link_threshold(st, counter)
    linked = sum(
        1
        for row in parsed.valid_rows
        if (threshold is None or int(row["DateTime"]) >= threshold)
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
        linked_quantity=linked,
    )
    st.next_upload_id += 1
    st.uploads.append(entry)
    return JSONUtf8Response({"uploading": entry.api_view(st.config.status_step_seconds, time.monotonic())})


def _link_threshold(st: SandboxState, counter: int) -> int | None:
    """Unix time before which an uploaded call does not link; None: no limit.

    Only a counter with an explicit ``calls_accounting`` entry is limited (switched off: nothing links);
    the default counters link every known identifier, whatever its age (sandbox/README.md).
    """
    if str(counter) not in st.config.calls_accounting:
        return None
    threshold = st.join_threshold(counter)
    return 2**63 if threshold is None else int(threshold.timestamp())


@router.get(PREFIX + "/offline_conversions/calls_visit_join_threshold")
async def calls_visit_join_threshold(counter_id: str, request: Request) -> Response:
    """``{"date": "<ISO UTC>"}``: the earliest time a call can be linked to a visit (api-notes §3.3).

    Calls accounting switched off: 400 ``invalid_parameter`` (the sandbox's choice, sandbox/README.md).
    """
    st = _state(request)
    counter, error = _auth(st, request, counter_id)
    if error is not None:
        return error
    threshold = st.join_threshold(counter)
    if threshold is None:
        return metrika_error(
            400,
            "invalid_parameter",
            f"Calls accounting is switched off for counter {counter}: enable it with "
            "POST offline_conversions/calls_extended_threshold",
            "counterId",
        )
    return JSONUtf8Response({"date": iso_utc(threshold)})


@router.api_route(PREFIX + "/offline_conversions/calls_extended_threshold", methods=["POST", "DELETE"])
async def calls_extended_threshold(counter_id: str, request: Request) -> Response:
    """Switch calls accounting (the extended 21-day linkage period) on (POST) or off (DELETE).

    Answers ``{"success": true}`` (api-notes §3.3; the shape rym reads). Switching on a counter that is
    already on keeps its start time; switching on starts the window's growth from now.
    """
    st = _state(request)
    counter, error = _auth(st, request, counter_id)
    if error is not None:
        return error
    st.set_calls_accounting(counter, enabled=request.method == "POST")
    return JSONUtf8Response({"success": True})


@router.get(PREFIX + "/offline_conversions/calls_uploading/{uploading_id}")
async def calls_uploading(counter_id: str, uploading_id: str, request: Request) -> Response:
    """One upload, its status advanced lazily from its creation time."""
    st = _state(request)
    counter, error = _auth(st, request, counter_id)
    if error is not None:
        return error
    found = next(
        (u for u in st.uploads if u.id == parse_id(uploading_id) and u.counter_id == counter),
        None,
    )
    if found is None:
        return metrika_error(404, "not_found", f"Calls uploading {uploading_id[:40]} not found")
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
    ids, error = _token_counters(st, request)
    if ids is None:
        return error or metrika_error(401, "unauthorized", "Unauthorized: an OAuth token is required")
    rows = [
        {"id": c, "name": f"Sandbox counter {c}", "site": f"counter{c}.example.ru", "status": "Active"}
        for c in ids
    ]
    return JSONUtf8Response({"rows": len(rows), "counters": rows})
