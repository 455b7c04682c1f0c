"""The sandbox application: both APIs, the ``/_sandbox/`` control endpoints, limits and faults."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox import calltouch, metrika
from sandbox.errors import api_error_500, metrika_error
from sandbox.middleware import SandboxMiddleware
from sandbox.state import SandboxState


def _bad(exc: Exception) -> Response:
    return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    import json

    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def build_fastapi(state: SandboxState) -> FastAPI:
    """The FastAPI app (without the limits/faults wrapper)."""
    app = FastAPI(
        title="calltouch-metrika sandbox",
        docs_url="/_sandbox/docs",
        redoc_url=None,
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.sandbox = state
    app.include_router(calltouch.router)
    app.include_router(metrika.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown paths and methods answer in the style of the API they fall under."""
        if request.url.path.startswith("/management/"):
            kind = "not_found" if exc.status_code == 404 else "invalid_parameter"
            return metrika_error(exc.status_code, kind, str(exc.detail))
        return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> Response:
        """Any unhandled exception: 500 in the API's error shape, never Starlette's plain text.

        Starlette re-raises the exception after sending this; :class:`SandboxMiddleware` logs it there.
        """
        ctype, body = api_error_500(request.url.path)
        return Response(body, status_code=500, media_type=ctype.decode())

    @app.get("/_sandbox/health")
    async def health() -> dict[str, bool]:
        """Liveness probe."""
        return {"ok": True}

    @app.post("/_sandbox/reset")
    async def reset(request: Request) -> Response:
        """Forget everything; config = defaults + the body's overrides."""
        try:
            state.reset(await _json_body(request))
        except (ValueError, ValidationError) as exc:
            return _bad(exc)
        return JSONResponse({"ok": True})

    @app.post("/_sandbox/config")
    async def config(request: Request) -> Response:
        """Update the config in place (state kept)."""
        try:
            state.configure(await _json_body(request))
        except (ValueError, ValidationError) as exc:
            return _bad(exc)
        return JSONResponse({"ok": True, "config": state.config.model_dump(mode="json")})

    @app.post("/_sandbox/faults")
    async def faults(request: Request) -> Response:
        """Replace the active faults (``{}`` clears them)."""
        try:
            state.set_faults(await _json_body(request))
        except (ValueError, ValidationError) as exc:
            return _bad(exc)
        return JSONResponse({"ok": True, "faults": state.faults.model_dump()})

    @app.get("/_sandbox/state")
    async def get_state(rows: bool = True) -> Response:
        """Everything received: uploads with rows, plans imports, request counters, points.

        ``?rows=false`` leaves out the uploads' parsed rows (handy after large uploads).
        """
        from sandbox.errors import JSONUtf8Response

        snapshot = state.snapshot()
        if not rows:
            for upload in snapshot["uploads"]:
                upload.pop("rows")
        return JSONUtf8Response(snapshot)

    return app


def create_app(overrides: dict[str, Any] | None = None) -> SandboxMiddleware:
    """The ASGI app to serve: FastAPI wrapped in the limits/faults middleware (outermost)."""
    state = SandboxState(overrides or {})
    return SandboxMiddleware(build_fastapi(state), state)
