"""What every hook shares around its transport: connection reading, settings, and the HttpHook surfaces.

* :func:`connection_token` (the token from a connection's password, checked) and :func:`transport_settings`
  for all four hooks.
* :class:`TransportHookMixin`: ``HttpHook``'s ``run`` / ``get_conn`` / ``check_response`` and ``transport``
  for both sync hooks; :class:`AsyncTransportHookMixin`: ``HttpAsyncHook``'s ``config`` (no extras as
  headers, a default timeout, async connection lookup) and ``run`` for both async hooks.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from calltouch_metrika.exceptions import AuthenticationError
from calltouch_metrika.hooks._errors import ApiSpec
from calltouch_metrika.hooks._masking import Secrets, amask_token
from calltouch_metrika.hooks._ratelimit import get_limiter
from calltouch_metrika.hooks._retry import RetryPolicy
from calltouch_metrika.hooks._transport import (
    USER_AGENT,
    AsyncTransport,
    Request,
    Transport,
    base_url_from_connection,
)


def connection_token(conn: Any, conn_id: str, *, kind: str) -> str:
    """The API token from the connection's ``password`` (stripped); a clear error naming ``kind`` if empty.

    Register the token with the masker (:class:`Secrets` / ``amask_token``) before calling
    :func:`check_token`, which refuses a token HTTP cannot carry.
    """
    token = (conn.password or "").strip()
    if not token:
        raise AuthenticationError(
            f"Connection {conn_id!r} has no {kind}: put it in the connection's password field"
        )
    return token


def check_token(token: str, conn_id: str, *, kind: str) -> None:
    """Refuse a token with a line break or another control character (issue 13 §5), without quoting it.

    Sent in a header, ``requests`` would raise ``InvalidHeader`` quoting the header's value (the token);
    in a query string it would be URL-encoded and rejected by the API. Either way it cannot work.
    """
    bad = sorted({f"U+{ord(c):04X}" for c in token if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise AuthenticationError(
            f"Connection {conn_id!r}: the {kind} contains control character(s) {', '.join(bad)} (a line break "
            f"pasted with it?). Enter the token again without them; the value is not shown."
        )


def transport_settings(
    hook: Any,
    *,
    timeout: float,
    max_attempts: int,
    requests_per_second: float,
    retry_wait_min: float,
    retry_wait_max: float,
    retry_after_max: float,
) -> None:
    """Validate and store on ``hook`` the settings every hook (sync or async) passes to its transport.

    Sets ``timeout``, ``requests_per_second`` and ``policy`` (:class:`RetryPolicy`); the transport itself
    is built on first use (the hook's ``_setup``), when the connection is read.
    """
    if timeout <= 0:
        raise ValueError("timeout must be > 0 seconds")
    if requests_per_second <= 0:
        raise ValueError("requests_per_second must be > 0")
    hook.timeout = timeout
    hook.requests_per_second = requests_per_second
    hook.policy = RetryPolicy(max_attempts, retry_wait_min, retry_wait_max, retry_after_max)


class TransportHookMixin:
    """The ``HttpHook`` methods both sync hooks share: every call goes through the hook's :class:`Transport`.

    Listed before ``HttpHook`` in a hook's bases. The hook provides :meth:`_setup` (builds the transport
    once, from its connection), :meth:`_what` (how messages name it) and :meth:`_authorize` (adds its
    credentials to a request: a query parameter for Calltouch, a header for Metrika).
    """

    method: str

    def _setup(self) -> Transport:  # pragma: no cover - provided by the hook
        raise NotImplementedError

    def _what(self) -> str:  # pragma: no cover - provided by the hook
        raise NotImplementedError

    def _authorize(self, req: Request) -> Request:  # pragma: no cover - provided by the hook
        raise NotImplementedError

    @property
    def transport(self) -> Transport:
        """The configured transport (exposes ``requests_sent`` / ``status_counts`` for benchmarks)."""
        return self._setup()

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """The hook's ``requests.Session``: no auth, and connection extras never become headers."""
        session = self._setup().session
        if headers:
            session.headers.update(headers)
        return session

    def run(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        **request_kwargs: Any,
    ) -> requests.Response:
        """HttpHook's generic call, routed through our limiter, retries, masking and typed errors.

        ``endpoint`` is a path (``/calls-service/...``); ``data`` (a dict) are query parameters. The hook
        adds its credentials. Prefer the typed methods.
        """
        transport = self._setup()
        req = Request(
            self.method,
            "/" + (endpoint or "").lstrip("/"),
            params=dict(data) if isinstance(data, dict) else None,
            headers=dict(headers) if headers else None,
            json_body=request_kwargs.get("json"),
            idempotent=self.method in ("GET", "HEAD"),
            what=self._what(),
        )
        return transport.request_response(self._authorize(req))

    def check_response(self, response: requests.Response) -> None:
        """Raise the typed error for a failed answer, without logging its body or URL."""
        if response.status_code >= 400:
            transport = self._setup()
            raise transport.api.error_parser(
                response.status_code, response.text, what=self._what(), secrets=transport.secrets
            )

    def _request(self, req: Request) -> Any:
        """Send ``req`` with the hook's credentials; the parsed JSON of the answer."""
        transport = self._setup()
        return transport.request_json(self._authorize(req))


class AsyncTransportHookMixin:
    """What both async hooks override of ``HttpAsyncHook`` (listed before it in a hook's bases).

    * :meth:`config`: the provider's would turn every connection extra (``site_id``, ...) into a request
      header and set no timeout. Ours resolves the connection once with the async API
      (``get_async_connection``: never the sync ``get_connection``, which can deadlock a triggerer),
      registers the token with the masker (``amask_secret``), and returns a ``SessionConfig`` with our
      base URL, only our headers, no basic auth, and ``extra_options`` = default timeout, no redirects,
      ``check_response`` off (our transport classifies every answer).
    * :meth:`run`: the provider's generic call, routed through our limiter, retries, auth and typed errors.

    The hook provides :meth:`_connect` (reads token and the rest from the connection; returns the
    token), :meth:`_authorize`, :meth:`_what` and the class attributes ``api`` / ``limiter_api``;
    ``max_in_flight`` caps parallel requests (Metrika).
    """

    api: ApiSpec
    limiter_api: str
    max_in_flight: int | None = None
    http_conn_id: str
    method: str
    timeout: float
    requests_per_second: float
    policy: RetryPolicy
    log: logging.Logger
    _config: Any
    _transport: AsyncTransport | None = None

    async def _connect(self, conn: Any, extra: dict[str, Any]) -> str:  # pragma: no cover - by the hook
        raise NotImplementedError

    def _authorize(self, req: Request) -> Request:  # pragma: no cover - provided by the hook
        raise NotImplementedError

    def _what(self) -> str:  # pragma: no cover - provided by the hook
        raise NotImplementedError

    async def config(self) -> Any:
        """The provider's ``SessionConfig``, built our way (see the class docstring); resolved once."""
        if self._config is None:
            import aiohttp
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )
            from airflow.providers.http.hooks.http import SessionConfig

            conn = await get_async_connection(conn_id=self.http_conn_id, hook=self)  # type: ignore[arg-type]
            extra = await get_async_extra_dejson(conn)
            token = await self._connect(conn, extra)
            await amask_token(token)
            check_token(token, self.http_conn_id, kind="API token")
            base_url = base_url_from_connection(conn)
            self._transport = AsyncTransport(
                hook=self,
                api=self.api,
                base_url=base_url,
                limiter=get_limiter(
                    self.limiter_api, base_url, self.requests_per_second, max_in_flight=self.max_in_flight
                ),
                timeout=self.timeout,
                policy=self.policy,
                secrets=Secrets(token, register=False),
                logger=self.log,
            )
            self._config = SessionConfig(
                base_url=base_url,
                headers=dict(USER_AGENT),
                auth=None,
                extra_options={
                    "timeout": aiohttp.ClientTimeout(total=self.timeout),
                    "allow_redirects": False,
                    "check_response": False,
                },
            )
        return self._config

    async def _setup(self) -> AsyncTransport:
        """The transport, built with the session config on first use."""
        await self.config()
        assert self._transport is not None
        return self._transport

    async def run(
        self,
        session: Any = None,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        json: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
    ) -> Any:
        """``HttpAsyncHook.run``, routed through our limiter, retries, auth, masking and typed errors.

        ``endpoint`` is a path; ``data`` (a dict) are query parameters. Returns the 2xx
        ``aiohttp.ClientResponse`` with its body read (``await response.json()`` works after the call).
        ``extra_options`` are not supported (the session config sets timeout and redirects).
        """
        if extra_options:
            raise TypeError(f"{type(self).__name__}.run does not take extra_options: {sorted(extra_options)}")
        transport = await self._setup()
        req = Request(
            self.method,
            "/" + (endpoint or "").lstrip("/"),
            params=dict(data) if isinstance(data, dict) else None,
            headers=dict(headers) if headers else None,
            json_body=json,
            idempotent=self.method in ("GET", "HEAD"),
            what=self._what(),
        )
        return await transport.request_response(self._authorize(req), session=session)
