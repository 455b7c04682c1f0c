"""Limits and faults, as a raw ASGI wrapper around the FastAPI app.

It must be the outermost ASGI callable (uvicorn calls it directly) because two faults need the
TCP transport: ``drop_connection`` closes the socket before any byte of the response, and
``truncate_body`` sends the headers (with the full ``Content-Length``) and half of the body, then
closes. The transport is reached through uvicorn's ``RequestResponseCycle``: the ``send``
callable uvicorn hands to the app is that object's bound method. Clients see exactly what a
broken network shows them: ``requests`` raises ``ConnectionError`` / ``ChunkedEncodingError``,
aiohttp ``ServerDisconnectedError`` / ``ClientPayloadError``.

Order per API request: count it -> rate limit / quota (429, not counted in the window; Metrika:
``quota_requests_by_ip``, ``quota_parallel_requests``, then the daily ``quota_requests_by_uid``) ->
Calltouch points (429 ``pointsLimitExceeded``) -> latency -> drop / 429 burst / 5xx faults ->
the app -> lost, truncated or garbled response faults. Any unhandled exception (in the app or here) is
logged with its traceback and answered 500 in the API's error shape (sandbox.errors.api_error_500), never
with a server's plain-text 500; a response already under way is cut off instead. A trailing slash is served as the path
without it. ``/_sandbox/*`` is never limited nor faulted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sandbox.errors import (
    CALLTOUCH_429_TEXT,
    GARBLED_BODY,
    INJECTED_ERROR,
    NGINX_503,
    POINTS_EXHAUSTED,
    api_error_500,
    metrika_body,
    metrika_quota_body,
)
from sandbox.params import metrika_token
from sandbox.state import SandboxState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: uvicorn's error logger (its handler and level: ``--log-level``), where uvicorn logs its own ASGI errors.
logger = logging.getLogger("uvicorn.error")


def classify(path: str) -> tuple[str | None, str]:
    """``(api, endpoint)`` of a request path; api is "calltouch", "metrika" or None."""
    if path.startswith("/calls-service/"):
        if path.rstrip("/").endswith("/requests"):
            return "calltouch", "requests"
        return "calltouch", "calls" if "/calls-diary/calls" in path else "calltouch_other"
    if path.startswith("/report-service/"):
        if path.rstrip("/").endswith("/add"):
            return "calltouch", "plans_add"
        return "calltouch", "plans_status" if path.rstrip("/").endswith("/status") else "calltouch_other"
    if path.startswith("/management/"):
        for name in (
            "upload_calls",
            "calls_uploadings",
            "calls_uploading",
            "calls_visit_join_threshold",
            "calls_extended_threshold",
        ):
            if f"/{name}" in path:
                return "metrika", name
        return "metrika", "metrika_other"
    return None, ""


class _Tracked:
    """The server's ``send``, noting whether the response has started and ended (for the guard)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.done = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.done = True
        await self.send(message)


def _abort(send: Send) -> None:
    """Close the client's TCP connection now, without (the rest of) a response."""
    if isinstance(send, _Tracked):
        send = send.send
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:  # not uvicorn's h11/httptools cycle: let the server close it
        raise ConnectionAbortedError("sandbox fault: connection dropped")
    cycle.disconnected = True  # uvicorn then neither sends a 500 nor logs "no response"
    transport.close()


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class SandboxMiddleware:
    """Applies rate limits, the points budget and faults to API requests (see module doc)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = _Tracked(send)
        try:
            await self._limited(scope, receive, tracked)
        except ConnectionAbortedError:
            raise
        except Exception as exc:  # the guard: no request ever gets the server's plain-text 500
            self._unhandled(scope, exc)
            if not tracked.started:
                ctype, body = api_error_500(scope["path"])
                by_status = self.state.counters.by_status
                by_status["500"] = by_status.get("500", 0) + 1
                await _respond(send, 500, body, ctype.decode())
            elif not tracked.done:
                _abort(send)

    def _unhandled(self, scope: Scope, exc: Exception) -> None:
        """Log an unhandled exception with its traceback and keep it for ``GET /_sandbox/state``."""
        logger.error("unhandled exception in %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
        errors = self.state.internal_errors
        errors.append({"method": scope.get("method", ""), "path": scope.get("path", ""), "error": repr(exc)})
        del errors[:-20]

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        api, endpoint = classify(scope["path"])
        if api is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # served as without the slash (no 307 redirect: clients would re-send the request, and a
            # redirected POST with a body is not re-sent by every client)
            scope = dict(scope, path=path.rstrip("/"), raw_path=scope.get("raw_path", b"").rstrip(b"/"))
        st = self.state
        st.counters.total += 1
        st.counters.by_api[api] = st.counters.by_api.get(api, 0) + 1
        st.counters.by_endpoint[endpoint] = st.counters.by_endpoint.get(endpoint, 0) + 1
        cfg = st.config
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        now = time.monotonic()
        faults = st.faults if st.faults.applies_to(api) else None
        retry_after = str(st.faults.retry_after)

        async def reply(
            status: int, body: bytes, ctype: str, extra: list[tuple[bytes, bytes]] | None = None
        ) -> None:
            key = str(status)
            st.counters.by_status[key] = st.counters.by_status.get(key, 0) + 1
            await _respond(send, status, body, ctype, extra)

        async def reply_metrika_429(error_type: str, with_retry_after: bool = True) -> None:
            extra = [(b"retry-after", retry_after.encode())] if with_retry_after else []
            body = metrika_quota_body(error_type, st)
            await reply(429, _json(body), "application/json; charset=utf-8", extra)

        async def reply_429_burst() -> None:
            if api == "calltouch":
                await reply(
                    429,
                    CALLTOUCH_429_TEXT.encode(),
                    "text/plain; charset=utf-8",
                    [(b"retry-after", retry_after.encode())],
                )
            else:
                kind = st.faults.burst_429_type
                await reply_metrika_429(kind, with_retry_after=kind != "quota_requests_by_uid")

        token = ""
        in_flight: dict[str, int] = {}
        if api == "calltouch":
            if not st.calltouch_window.admit(ip, cfg.calltouch_rps, now):
                await reply_429_burst()
                return
            if st.points_exhausted():
                await reply(429, _json(POINTS_EXHAUSTED), "application/json; charset=utf-8")
                return
        else:
            token = _metrika_token(scope)
            if not st.metrika_window.has_room(ip, cfg.metrika_rps, now):
                await reply_metrika_429("quota_requests_by_ip")
                return
            if st.metrika_in_flight.get(token, 0) >= cfg.metrika_parallel:
                await reply_metrika_429("quota_parallel_requests")
                return
            if token and st.metrika_daily_exhausted(token):
                # no Retry-After: retrying before 00:00 GMT is pointless; the message says when it resets
                await reply_metrika_429("quota_requests_by_uid", with_retry_after=False)
                return
            st.metrika_window.admit(ip, cfg.metrika_rps, now)
            if token:
                st.spend_metrika_request(token)
            in_flight = st.metrika_in_flight  # a reset during the request swaps the dict: keep this one
            in_flight[token] = in_flight.get(token, 0) + 1
        try:
            await self._faulted(scope, receive, send, api, endpoint, faults, reply, reply_429_burst)
        finally:
            if api == "metrika":
                in_flight[token] -= 1

    async def _faulted(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        api: str,
        endpoint: str,
        faults: Any,
        reply: Callable[..., Awaitable[None]],
        reply_429: Callable[[], Awaitable[None]],
    ) -> None:
        st = self.state
        mode = ""
        if faults is not None:
            if faults.latency:
                await asyncio.sleep(faults.latency)
            if faults.drop_connection > 0:
                faults.drop_connection -= 1
                st.counters.by_status["dropped"] = st.counters.by_status.get("dropped", 0) + 1
                _abort(send)
                return
            if faults.burst_429 > 0:
                faults.burst_429 -= 1
                await reply_429()
                return
            if faults.internal_error > 0:
                faults.internal_error -= 1
                scope = dict(scope, **{INJECTED_ERROR: True})
            fail = False
            if faults.fail_5xx > 0:
                faults.fail_5xx -= 1
                fail = True
            elif faults.fail_5xx_rate and st.fault_rng.random() < faults.fail_5xx_rate:
                fail = True
            if fail:
                if api == "calltouch":
                    await reply(503, NGINX_503.encode(), "text/html")
                else:
                    body = metrika_body(503, "backend_error", "Service is temporarily unavailable")
                    await reply(503, _json(body), "application/json; charset=utf-8")
                return
            if endpoint == "upload_calls" and scope["method"] == "POST" and faults.lose_upload_response > 0:
                faults.lose_upload_response -= 1
                mode = "lose"
            elif faults.truncate_body > 0:
                faults.truncate_body -= 1
                mode = "truncate"
            elif faults.garbled_body > 0 and faults.garbled_endpoint in (None, endpoint):
                faults.garbled_body -= 1
                mode = "garble"

        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                key = str(status)
                st.counters.by_status[key] = st.counters.by_status.get(key, 0) + 1
                if api == "calltouch" and 200 <= status < 300:
                    st.spend_point()
                if not mode:
                    await send(message)
                else:
                    start.update(message)
                return
            if not mode:
                await send(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        if mode == "lose":
            st.counters.by_status["lost"] = st.counters.by_status.get("lost", 0) + 1
            _abort(send)
        elif mode == "garble":
            st.counters.by_status["garbled"] = st.counters.by_status.get("garbled", 0) + 1
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", b"retry-after")
            ]
            headers.append((b"content-length", str(len(GARBLED_BODY)).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": GARBLED_BODY, "more_body": False})
        elif mode == "truncate":
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send(
                {"type": "http.response.start", "status": start.get("status", 200), "headers": headers}
            )
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            _abort(send)


def _metrika_token(scope: Scope) -> str:
    """The token of ``Authorization: OAuth <token>`` (any case, or ``Bearer``); "" when there is none."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return metrika_token(value.decode("latin-1"))
    return ""


def _json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
