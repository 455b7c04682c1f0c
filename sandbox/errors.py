"""Error bodies exactly as each API answers them (or as documented in the README where unknown)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

CALLTOUCH_429_TEXT = "Too Many Requests"
POINTS_EXHAUSTED = {"type": "pointsLimitExceeded", "message": "Дневной лимит баллов API исчерпан"}
NGINX_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


#: The ``garbled_body`` fault's answer: HTTP 200, the original headers, and this instead of the JSON.
GARBLED_BODY = (
    "<!DOCTYPE html><html><head><title>502</title></head><body><p>Ой! Что-то пошло не так</p></body></html>\n"
).encode()

#: Metrika's quota errors (api-notes §3.5): HTTP 429 whose ``error_type`` names the quota.
METRIKA_QUOTA_MESSAGES = {
    "quota_requests_by_ip": "Quota exceeded: quota_requests_by_ip, at most {rps} requests per second from one IP",
    "quota_parallel_requests": (
        "Quota exceeded: quota_parallel_requests, at most {parallel} parallel requests per user"
    ),
    "quota_requests_by_uid": (
        "Quota exceeded: quota_requests_by_uid, at most {daily} requests a day per user; "
        "the quota resets at {reset} (00:00 GMT)"
    ),
    "quota_delegate_requests": "Quota exceeded: quota_delegate_requests, too many representatives added",
    "quota_grants_requests": "Quota exceeded: quota_grants_requests, too many access grants",
    "quota_requests_by_counter_id": "Quota exceeded: quota_requests_by_counter_id, too many requests for this counter",
}


class JSONUtf8Response(JSONResponse):
    """JSON with non-ASCII text kept as UTF-8 (as both real APIs send Cyrillic)."""

    media_type = "application/json;charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def metrika_body(status: int, error_type: str, message: str, location: str | None = None) -> dict[str, Any]:
    """Metrika's error document: ``{"errors": [{error_type, message[, location]}], "code", "message"}``."""
    err: dict[str, Any] = {"error_type": error_type, "message": message}
    if location is not None:
        err["location"] = location
    return {"errors": [err], "code": status, "message": message}


def metrika_quota_body(error_type: str, st: Any) -> dict[str, Any]:
    """The 429 body of Metrika quota ``error_type`` (``st``: the sandbox state, for limits and the clock)."""
    cfg = st.config
    message = METRIKA_QUOTA_MESSAGES[error_type].format(
        rps=cfg.metrika_rps,
        parallel=cfg.metrika_parallel,
        daily=cfg.metrika_daily_quota,
        reset=st.metrika_quota_reset().strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return metrika_body(429, error_type, message)


def metrika_error(
    status: int,
    error_type: str,
    message: str,
    location: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A Metrika error response."""
    return JSONUtf8Response(
        metrika_body(status, error_type, message, location), status_code=status, headers=headers
    )


def calltouch_message(status: int, message: str) -> Response:
    """A calls-service error (``{"message": ...}``): the real body is undocumented, see README."""
    return JSONUtf8Response({"message": message}, status_code=status)


def plans_api_error(status: int, code: int, message: str) -> Response:
    """report-service ``apiError`` body (seed 001, error 2)."""
    return JSONUtf8Response(
        {
            "meta": [],
            "data": {
                "type": "apiError",
                "apiErrorData": {"errorCode": code, "errorMessage": message, "errorDescription": None},
                "validationErrorData": None,
            },
        },
        status_code=status,
    )


def plans_violations(violations: list[dict[str, str]]) -> Response:
    """report-service ``validationError`` body (seed 001, errors 3, 4 and 6)."""
    return JSONUtf8Response(
        {
            "meta": [],
            "data": {
                "type": "validationError",
                "apiErrorData": None,
                "validationErrorData": {"violations": violations},
            },
        },
        status_code=400,
    )


def plans_missing_field(name: str) -> Response:
    """report-service "missing required field" body (seed 001, error 5)."""
    return JSONUtf8Response(
        {"meta": [], "data": {"message": f'В запросе не указано обязательное поле "{name}"'}}, status_code=400
    )


#: Request-scope key the ``internal_error`` fault sets: the route then raises (see :func:`injected_error`).
INJECTED_ERROR = "sandbox.internal_error"
INTERNAL_ERROR_MESSAGE = "Internal server error"


def api_error_500(path: str) -> tuple[bytes, bytes]:
    """``(content_type, body)`` of an unhandled error's 500 in the shape of the API ``path`` belongs to.

    Metrika: its error document with ``backend_error`` (the reference's server-error type); calls-service:
    ``{"message": …}``; report-service (plans): an ``apiError`` body; ``/_sandbox/``: ``{"ok": false, …}``.
    Never a plain-text body: clients parse every answer of an API path as that API's JSON.
    """
    body: dict[str, Any]
    if path.startswith("/management/"):
        body = metrika_body(500, "backend_error", INTERNAL_ERROR_MESSAGE)
    elif path.startswith("/report-service/"):
        body = json.loads(plans_api_error(500, 500, "Внутренняя ошибка сервера").body)
    elif path.startswith("/_sandbox/"):
        body = {"ok": False, "error": INTERNAL_ERROR_MESSAGE}
    else:
        body = {"message": "Внутренняя ошибка сервера"}
    return JSONUtf8Response.media_type.encode(), json.dumps(
        body, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def injected_error(request: Request) -> None:
    """Router dependency: raise when the ``internal_error`` fault picked this request (tests of the guard)."""
    if request.scope.get(INJECTED_ERROR):
        raise RuntimeError("sandbox fault internal_error: an unhandled exception inside the route")
