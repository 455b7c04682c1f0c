"""uvicorn's HTTP protocols, answering a request the parser rejects in the style of the API it was for.

A request line uvicorn's parser cannot read (the usual case: a raw, not percent-encoded, UTF-8 query
string such as ``?comment=Звонок``) never reaches the ASGI app: uvicorn answers a plain-text
``400 Invalid HTTP request received.`` by itself. The real APIs answer in their own error shapes, so the
sandbox does too: Metrika's error body (``400 invalid_parameter``) for ``/management/…`` and a
calls-service ``{"message": …}`` for Calltouch paths. The request is still rejected, not repaired: a
client that does not percent-encode its URL is told so here rather than surprised in production
(sandbox/README.md, "Choices where the real API is undocumented").
"""

from __future__ import annotations

import json
import re
from typing import Any

from sandbox.errors import metrika_body

_REQUEST_LINE = re.compile(rb"(?:GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) (\S+) HTTP/1\.[01]")
_MESSAGE = "Invalid request URI: non-ASCII characters must be percent-encoded (UTF-8)"


def api_400(target: bytes | None) -> tuple[bytes, bytes] | None:
    """``(content_type, body)`` of the API's 400 for a request to ``target``; None: not an API path."""
    path = (target or b"").split(b"?", 1)[0]
    if path.startswith(b"/management/"):
        body = metrika_body(400, "invalid_parameter", _MESSAGE, "uri")
    elif path.startswith((b"/calls-service/", b"/report-service/")):
        body = {
            "message": "Некорректный URI запроса: символы не из ASCII должны быть закодированы (%XX, UTF-8)"
        }
    else:
        return None
    return b"application/json;charset=UTF-8", json.dumps(
        body, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


class _ApiShaped400:
    """Mixin: remember the latest request line seen, and shape the parser's 400 by its path."""

    _recent: bytes = b""
    transport: Any
    server_state: Any

    def data_received(self, data: bytes) -> None:
        self._recent = (self._recent + data)[-16384:]
        super().data_received(data)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        lines = _REQUEST_LINE.findall(self._recent)
        shaped = api_400(lines[-1] if lines else None)
        if shaped is None:
            super().send_400_response(msg)  # type: ignore[misc]
            return
        ctype, body = shaped
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + ctype + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def protocol_class() -> type:
    """The httptools protocol when httptools is installed (as uvicorn's ``http="auto"``), else h11's."""
    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools is in requirements.lock
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    return type("SandboxHttpProtocol", (_ApiShaped400, Base), {})
