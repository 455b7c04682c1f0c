"""The transports shared by every hook: one API call with pacing, a timeout, retries and typed errors.

* :class:`Transport` (sync, one ``requests.Session``) and :class:`AsyncTransport` (triggers: sends through
  the provider's ``HttpAsyncHook`` session, one attempt per provider call). Their common part is
  :class:`_TransportBase`: settings, the retry schedule (``_retry.py``), JSON parsing, error wording.
* The rules both follow: 429 honouring ``Retry-After``, 5xx, connection errors, timeouts, truncated bodies
  and non-JSON ``200`` answers are retried for idempotent requests (issue 13 §4: a garbled answer to a GET
  is transient); a non-idempotent request (an upload, a plans import) is never blindly re-sent: if it may
  have been carried out, :class:`~calltouch_metrika.exceptions.OutcomeUnknownError` is raised. A request
  that ``requests``/``aiohttp`` refuse to send (a header or URL with characters HTTP forbids, such as a
  token with a line break) becomes a typed error whose text does not quote the value (issue 13 §5).
* What differs between APIs comes in as an :class:`~calltouch_metrika.hooks._errors.ApiSpec`: this module
  never names an API.
* :class:`MultipartUpload`: one file streamed as ``multipart/form-data`` (``requests_toolbelt``'s
  ``MultipartEncoder``: the file is read in chunks while sending, never held in memory).

Nothing here logs a full URL: log lines carry the method and the path without its query string.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from requests_toolbelt import MultipartEncoder
from urllib3.exceptions import NewConnectionError

from calltouch_metrika.exceptions import (
    CalltouchMetrikaError,
    MalformedResponseError,
    OutcomeUnknownError,
    QuotaExceededError,
    ServerError,
    ValidationError,
)
from calltouch_metrika.hooks._errors import ApiSpec
from calltouch_metrika.hooks._masking import Secrets, install_log_filters, snippet
from calltouch_metrika.hooks._ratelimit import SlidingWindowLimiter
from calltouch_metrika.hooks._retry import Retryable, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

#: Headers every request carries.
USER_AGENT = {"User-Agent": "calltouch-metrika-airflow"}

#: What ``requests`` raises for a request it refuses to build or send; their text can quote a header
#: value (``InvalidHeader: ... 'OAuth <token>'``) or the URL (with a token in its query string).
_UNSENDABLE = (
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidJSONError,
)


# --------------------------------------------------------------------------------------------------
# Requests and bodies
# --------------------------------------------------------------------------------------------------


class MultipartUpload:
    """One file field as a streamed ``multipart/form-data`` body (``requests_toolbelt.MultipartEncoder``).

    ``source``: bytes, a path (``str`` without a newline, or ``PathLike``; the part's filename is its base
    name), CSV text (a ``str`` with a newline, sent as UTF-8), or a binary file object (read from its
    current position). Each attempt gets a fresh encoder (:meth:`encoder`) over the same file, rewound, so
    a request the server certainly did not act on can be sent again. :meth:`close` closes a file it opened.
    """

    def __init__(
        self,
        source: bytes | str | os.PathLike | IO[bytes],
        *,
        field_name: str = "file",
        filename: str = "calls.csv",
        content_type: str = "text/csv",
    ) -> None:
        self._owned: IO[bytes] | None = None
        if isinstance(source, str) and "\n" in source:  # CSV text, not a path (no path holds a newline)
            source = source.encode("utf-8")
        if isinstance(source, bytes | bytearray | memoryview):
            self._fh: IO[bytes] = io.BytesIO(bytes(source))
        elif isinstance(source, str | os.PathLike):
            self._owned = self._fh = open(os.fspath(source), "rb")  # noqa: SIM115 - closed in close()
            filename = os.path.basename(os.fspath(source)) or filename
        elif hasattr(source, "read"):
            self._fh = source
        else:
            raise TypeError(f"csv must be bytes, a path or a binary file object, not {type(source).__name__}")
        if not self._fh.seekable():
            data = self._fh.read()
            self._fh = io.BytesIO(data if isinstance(data, bytes) else str(data).encode())
        self._start = self._fh.tell()
        self.field_name = field_name
        self.filename = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        self.content_type = content_type

    def encoder(self) -> MultipartEncoder:
        """A new encoder over the file, from its start (requests streams it, with its ``Content-Length``)."""
        self._fh.seek(self._start)
        return MultipartEncoder(fields={self.field_name: (self.filename, self._fh, self.content_type)})

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


@dataclass
class Request:
    """One API call, described without a URL so that nothing with a token ever gets logged."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    json_body: Any = None
    body: MultipartUpload | None = None
    idempotent: bool = True
    what: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: Reads the parsed JSON into what the caller returns, raising
    #: :class:`~calltouch_metrika.exceptions.MalformedResponseError` for an answer of the wrong shape (a page
    #: whose counts do not add up, an upload record without ``status``). For an idempotent request that is a
    #: garbled answer like a non-JSON body: retried within the policy, then the error (issue 13 §4).
    shape: Callable[[Any], Any] | None = None


def base_url_from_connection(conn: Any) -> str:
    """The API base URL from a connection: ``host`` as is if it has a scheme, else schema/host/port."""
    host = (conn.host or "").strip()
    if not host:
        raise ValueError(f"Connection {conn.conn_id!r} has no host (e.g. https://api.calltouch.ru)")
    url = host if "://" in host else f"{conn.schema or 'https'}://{host}"
    if conn.port and urlsplit(url).port is None:
        url = f"{url}:{conn.port}"
    return url.rstrip("/")


def safe_path(url_or_path: str) -> str:
    """A URL's path without scheme, host or query: what we allow ourselves to log."""
    return urlsplit(url_or_path).path or "/"


def make_session(pool_size: int) -> requests.Session:
    """A plain session: no auth, no headers from connection extras, a pool big enough for our threads."""
    install_log_filters()
    session = requests.Session()
    session.trust_env = True
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(USER_AGENT)
    return session


def _sent_for_sure(exc: requests.ConnectionError) -> bool:
    """False when the failure happened while connecting (the server cannot have seen the request)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError -> its reason
    return not isinstance(reason, NewConnectionError | ConnectionRefusedError)


# --------------------------------------------------------------------------------------------------
# What both transports share
# --------------------------------------------------------------------------------------------------


class _TransportBase:
    """What the sync and async transports share: settings, retry schedule, JSON parsing, error wording, pacing.

    Written once so that both hooks and both flavours (operators: sync; triggers: async) behave alike.
    """

    def __init__(
        self,
        *,
        api: ApiSpec,
        base_url: str,
        limiter: SlidingWindowLimiter,
        timeout: float,
        policy: RetryPolicy,
        secrets: Secrets,
        logger: logging.Logger | None = None,
    ) -> None:
        self.api = api
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.timeout = timeout
        self.policy = policy
        self.secrets = secrets
        self.log = logger or log

    def _where(self, req: Request) -> str:
        return f"{req.what}: {self.api.name} {req.method} {safe_path(req.path)}"

    def _not_json(self, req: Request, status: int, text: str) -> str:
        return (
            f"{req.what}: {self.api.name} answered HTTP {status} to {req.method} {safe_path(req.path)} "
            f"with a body that is not JSON ({snippet(text, self.secrets, 120)!r})"
        )

    def parse_json(self, req: Request, status: int, text: str) -> Any:
        """The JSON of a 2xx answer.

        A body that is not JSON is, for an idempotent request, a :class:`Retryable` ``malformed`` attempt
        (retried within the policy, then :class:`MalformedResponseError`); for a non-idempotent one, of
        unknown outcome (:class:`OutcomeUnknownError`: it may have been carried out). With ``req.shape``,
        the document is read through it and what it returns is returned; its
        :class:`MalformedResponseError` (JSON of the wrong shape) is retried the same way for an idempotent
        request and raised as is for another.
        """
        try:
            document = json.loads(text)
        except ValueError:
            message = self._not_json(req, status, text)
            if not req.idempotent:
                raise OutcomeUnknownError(
                    message + "; the request may have been carried out: look it up before sending it again",
                    status_code=status,
                ) from None
            raise Retryable("malformed", message, status=status) from None
        if req.shape is None:
            return document
        try:
            return req.shape(document)
        except MalformedResponseError as exc:
            if not req.idempotent:
                raise
            raise Retryable("malformed", str(exc), status=status) from None

    def _exhausted(self, req: Request, exc: Retryable) -> CalltouchMetrikaError:
        where = self._where(req)
        tries = f"after {self.policy.max_attempts} attempt(s)"
        if exc.kind == "429":
            return QuotaExceededError(
                f"{where} stayed rate-limited ({exc.detail}) {tries}. {self.api.rate_hint}",
                status_code=429,
            )
        if exc.kind == "truncated":
            return MalformedResponseError(f"{where}: the response body was cut short {tries} ({exc.detail})")
        if exc.kind == "malformed":
            return MalformedResponseError(f"{exc.detail}, {tries}", status_code=exc.status)
        return ServerError(
            f"{where} failed {tries}: {exc.detail}. The API may be down; retry later.", status_code=exc.status
        )

    def _unsendable(self, req: Request, exc: BaseException) -> ValidationError:
        """``requests``/``aiohttp`` refused to send: name the kind of problem, never the offending value."""
        return ValidationError(
            f"{self._where(req)}: the request could not be sent: {type(exc).__name__} (a header or the URL holds "
            f"characters HTTP does not allow, e.g. a line break in the connection's token or host; the value "
            f"is not shown). Fix the connection."
        )

    def _unknown(self, req: Request, detail: str) -> OutcomeUnknownError:
        return OutcomeUnknownError(
            f"{self._where(req)}: {detail} after the request was sent, so it may or may not have been "
            f"carried out. It was not re-sent: look the result up (e.g. by its comment) before trying again."
        )

    def _adapt(self, status: int, text: str) -> None:
        """Let the limiter learn from the answer: a rate 429 widens its window, a success narrows it back."""
        if 200 <= status < 300:
            self.limiter.reward()
        elif status == 429 and self.api.read_429(text, self.secrets).final is None:
            self.limiter.penalize()


def classify(api: ApiSpec, req: Request, status: int, headers: Any, text: str, secrets: Secrets) -> None:
    """Raise the right thing for a non-2xx answer: :class:`Retryable` or a typed error."""
    if status == 429:
        quota = api.read_429(text, secrets)
        if quota.final is not None:
            raise QuotaExceededError(f"{req.what}: {quota.final}", status_code=429, resets_at=quota.resets_at)
        raise Retryable(
            "429",
            f"HTTP 429 {quota.detail}",
            status=429,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    if status >= 500:
        detail = f"HTTP {status} ({snippet(text, secrets, 120)})" if text.strip() else f"HTTP {status}"
        if not req.idempotent and not (status == 503 and text.strip()):
            raise OutcomeUnknownError(
                f"{req.what}: {api.name} {req.method} {safe_path(req.path)} answered {detail}, so it may or may "
                f"not have been carried out. It was not re-sent: look the result up before trying again.",
                status_code=status,
            )
        raise Retryable(
            "5xx", detail, status=status, retry_after=parse_retry_after(headers.get("Retry-After"))
        )
    if 300 <= status < 400:
        raise MalformedResponseError(
            f"{req.what}: {api.name} answered an unexpected redirect (HTTP {status}) to "
            f"{req.method} {safe_path(req.path)}; check the connection's host.",
            status_code=status,
        )
    raise api.error_parser(status, text, what=req.what, secrets=secrets)


# --------------------------------------------------------------------------------------------------
# Sync transport
# --------------------------------------------------------------------------------------------------


class Transport(_TransportBase):
    """Send :class:`Request` s through one ``requests.Session`` with limiter, timeout, retries and typed errors.

    Keyword arguments: ``session`` and the settings of every transport (``api``, ``base_url``, ``limiter``,
    ``timeout``, ``policy``, ``secrets``, ``logger``).
    """

    def __init__(self, *, session: requests.Session, **settings: Any) -> None:
        super().__init__(**settings)
        self.session = session
        self.requests_sent = 0
        self.status_counts: dict[int, int] = {}
        self._count_lock = threading.Lock()

    def _count(self, status: int | None) -> None:
        with self._count_lock:
            self.requests_sent += 1
            if status is not None:
                self.status_counts[status] = self.status_counts.get(status, 0) + 1

    def request_response(self, req: Request) -> requests.Response:
        """Send with retries; return the successful (2xx) response, else raise a typed error."""
        return self._retrying(req, self._attempt)

    def request_json(self, req: Request) -> Any:
        """Send with retries and parse the JSON body of the 2xx answer (a non-JSON body is retried, if idempotent)."""

        def attempt(req: Request) -> Any:
            response = self._attempt(req)
            return self.parse_json(req, response.status_code, response.text)

        return self._retrying(req, attempt)

    def _retrying(self, req: Request, attempt: Callable[[Request], Any]) -> Any:
        retrying = tenacity.Retrying(before_sleep=self._before_sleep(req), **self.policy.tenacity_kwargs())
        try:
            return retrying(attempt, req)
        except Retryable as exc:
            raise self._exhausted(req, exc) from None

    def _before_sleep(self, req: Request) -> Callable[[tenacity.RetryCallState], None]:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "%s %s %s: %s; retrying in %.1f s (attempt %d of %d)",
                self.api.name,
                req.method,
                safe_path(req.path),
                getattr(exc, "detail", type(exc).__name__),
                delay,
                state.attempt_number + 1,
                self.policy.max_attempts,
            )

        return before_sleep

    def _attempt(self, req: Request) -> requests.Response:
        headers = dict(req.headers or {})
        encoder = req.body.encoder() if req.body is not None else None
        if encoder is not None:
            headers["Content-Type"] = encoder.content_type
            headers["Content-Length"] = str(encoder.len)
        self.limiter.acquire()
        try:
            self.log.debug("%s %s %s", self.api.name, req.method, safe_path(req.path))
            try:
                response = self.session.request(
                    req.method,
                    self.base_url + req.path,
                    params=req.params,
                    headers=headers,
                    json=req.json_body,
                    data=encoder,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except _UNSENDABLE as exc:  # before ConnectionError: InvalidSchema etc. are not network errors
                raise self._unsendable(req, exc) from None
            except requests.ConnectionError as exc:  # includes ConnectTimeout
                self._count(None)
                if isinstance(exc, requests.ConnectTimeout):
                    raise Retryable("connect", f"connection timed out after {self.timeout:g} s") from None
                if not _sent_for_sure(exc):
                    raise Retryable("connect", "connection refused") from None
                if not req.idempotent:
                    raise self._unknown(req, "the connection was closed without an answer") from None
                raise Retryable("dropped", "the connection was closed without an answer") from None
            except requests.Timeout:
                self._count(None)
                if not req.idempotent:
                    raise self._unknown(req, f"no answer within {self.timeout:g} s") from None
                raise Retryable("timeout", f"no answer within {self.timeout:g} s") from None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
                self._count(None)
                if not req.idempotent:
                    raise self._unknown(req, "the answer was cut short") from None
                raise Retryable(
                    "truncated", "the answer was cut short (connection closed mid-body)"
                ) from None
            except ValueError as exc:  # http.client's own header/URL checks ("Invalid header value ...")
                raise self._unsendable(req, exc) from None
        finally:
            self.limiter.release()
        self._count(response.status_code)
        self._adapt(response.status_code, response.text)
        if 200 <= response.status_code < 300:
            return response
        classify(self.api, req, response.status_code, response.headers, response.text, self.secrets)
        raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# Async transport: our policy around the provider's HttpAsyncHook session
# --------------------------------------------------------------------------------------------------


class AsyncTransport(_TransportBase):
    """The async twin of :class:`Transport`, for triggers: sends through the provider's ``AsyncHttpSession``.

    Each attempt is one ``AsyncHttpSession.run`` of the hook (an ``HttpAsyncHook`` with ``retry_limit=1``
    and ``check_response`` off, so the provider neither retries nor raises): this class keeps our
    pacing (:meth:`SlidingWindowLimiter.aacquire`), our retry policy, the non-idempotent rule and the
    typed, secret-free errors. Keyword arguments: ``hook`` (the ``HttpAsyncHook``) and the settings of
    every transport.
    """

    def __init__(self, *, hook: Any, **settings: Any) -> None:
        super().__init__(**settings)
        self.hook = hook

    async def request_response(self, req: Request, session: Any = None) -> Any:
        """Send with retries; the successful (2xx) ``aiohttp.ClientResponse``, its body already read.

        ``session``: an ``aiohttp.ClientSession`` to send through (as ``HttpAsyncHook.run`` accepts);
        by default the hook's :meth:`~HttpAsyncHook.session` opens one for this call.
        """
        response, _ = await self._send(req, session, parse=False)
        return response

    async def request_json(self, req: Request) -> Any:
        """Send with retries and parse the JSON body of the 2xx answer (a non-JSON body is retried, if idempotent)."""
        _, document = await self._send(req, None, parse=True)
        return document

    async def _send(self, req: Request, session: Any, *, parse: bool) -> tuple[Any, Any]:
        install_log_filters()
        retrying = tenacity.AsyncRetrying(**self.policy.tenacity_kwargs())
        try:
            async with self._http_session(req.method, session) as http:
                async for attempt in retrying:
                    with attempt:
                        response, text = await self._attempt(http, req)
                        return response, self.parse_json(req, response.status, text) if parse else None
        except Retryable as exc:
            raise self._exhausted(req, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def _http_session(self, method: str, session: Any) -> AsyncIterator[Any]:
        """The provider's ``AsyncHttpSession`` for ``method``, on ``session`` or on a new one of the hook."""
        if session is None:
            async with self.hook.session(method=method) as http:
                yield http
            return
        from airflow.providers.http.hooks.http import AsyncHttpSession

        request = self.hook._get_request_func(session=session, method=method)
        yield AsyncHttpSession(
            hook=self.hook, request=request, config=await self.hook.config(), method=method
        )

    async def _attempt(self, http: Any, req: Request) -> tuple[Any, str]:
        import aiohttp

        params = {k: str(v) for k, v in (req.params or {}).items()}
        endpoint = req.path
        if params and req.method != "GET":  # the provider sends ``data`` as the query string of GETs only
            endpoint = f"{endpoint}?{urlencode(params)}"
        await self.limiter.aacquire()
        try:
            self.log.debug("%s %s %s", self.api.name, req.method, safe_path(req.path))
            try:
                response = await http.run(
                    endpoint=endpoint,
                    data=(params or None) if req.method == "GET" else None,
                    json=req.json_body,
                    headers=req.headers,
                )
                try:
                    await response.read()  # cached: the answer stays readable after the session closes
                finally:
                    response.release()
            except aiohttp.InvalidURL as exc:
                raise self._unsendable(req, exc) from None
            except aiohttp.ClientConnectorError:
                raise Retryable("connect", "could not connect") from None
            except aiohttp.ConnectionTimeoutError:  # before TimeoutError: nothing was sent yet
                raise Retryable("connect", f"connection timed out after {self.timeout:g} s") from None
            except TimeoutError:
                if not req.idempotent:
                    raise self._unknown(req, f"no answer within {self.timeout:g} s") from None
                raise Retryable("timeout", f"no answer within {self.timeout:g} s") from None
            except aiohttp.ClientPayloadError:
                if not req.idempotent:
                    raise self._unknown(req, "the answer was cut short") from None
                raise Retryable(
                    "truncated", "the answer was cut short (connection closed mid-body)"
                ) from None
            except aiohttp.ClientError:
                if not req.idempotent:
                    raise self._unknown(req, "the connection was closed without an answer") from None
                raise Retryable("dropped", "the connection was closed without an answer") from None
            except ValueError as exc:  # aiohttp's header checks ("Newline or carriage return ... detected")
                raise self._unsendable(req, exc) from None
        finally:
            self.limiter.release()
        status = response.status
        text = await response.text(errors="replace")
        self._adapt(status, text)
        if 200 <= status < 300:
            return response, text
        classify(self.api, req, status, response.headers, text, self.secrets)
        raise AssertionError("unreachable")  # pragma: no cover
