"""Shared HTTP behaviour of the Calltouch and Metrika hooks.

Written once, used by both hooks (sync and async):

* :class:`SlidingWindowLimiter` and :func:`get_limiter`: at most N request *starts* in any rolling window,
  per process and per API host, shared by every hook instance (the APIs count per IP, not per hook);
  evenly paced and first come first served among threads; optionally also a cap on requests in flight
  (Metrika allows 3 parallel requests). :func:`young_gc_only` keeps full GC pauses out of paced extraction.
* :class:`Transport` / :class:`AsyncTransport` (which sends through the provider's ``HttpAsyncHook``
  session, one attempt per provider call): one request with a timeout, the retry policy (tenacity:
  429 honouring ``Retry-After``, 5xx, connection errors, timeouts; exponential backoff with jitter;
  bounded attempts), the non-idempotent rule (never blindly re-send an upload: raise
  :class:`~calltouch_metrika.exceptions.OutcomeUnknownError`), and translation of every failure into the
  typed errors of :mod:`calltouch_metrika.exceptions`. Their common part is :class:`_TransportBase`.
* :class:`TransportHookMixin`: ``HttpHook``'s ``run`` / ``get_conn`` / ``check_response`` and ``transport``
  for both sync hooks; :class:`AsyncTransportHookMixin`: ``HttpAsyncHook``'s ``config`` (no extras as
  headers, a default timeout, async connection lookup) and ``run`` for both async hooks;
  :func:`transport_settings` and :func:`connection_token` for all four hooks.
* :class:`Secrets`: registers tokens with Airflow's masker (raw and URL-encoded, because the Calltouch
  token travels in the query string) and scrubs them from any text we put in a message.

Nothing here logs a full URL: log lines carry the method and the path without its query string.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from calltouch_metrika.exceptions import (
    AuthenticationError,
    CalltouchMetrikaError,
    MalformedResponseError,
    NotFoundError,
    OutcomeUnknownError,
    QuotaExceededError,
    ServerError,
    ValidationError,
)

log = logging.getLogger(__name__)

#: How much of a response body (after scrubbing secrets) an error message may quote.
BODY_SNIPPET = 300

# --------------------------------------------------------------------------------------------------
# Secrets and masking
# --------------------------------------------------------------------------------------------------

_QUERY_TOKEN_RE = re.compile(r"(clientApiId=)[^&\s\"' ]*", re.IGNORECASE)


class _QueryTokenFilter(logging.Filter):
    """Scrub ``clientApiId=...`` from log records of urllib3 (it logs request paths at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if "clientapiid=" in message.lower():
            record.msg = _QUERY_TOKEN_RE.sub(r"\1***", message)
            record.args = None
        return True


_FILTER_INSTALLED = False
_FILTER_LOCK = threading.Lock()


def install_log_filters() -> None:
    """Install the query-token scrubber on urllib3's loggers once per process."""
    global _FILTER_INSTALLED
    with _FILTER_LOCK:
        if _FILTER_INSTALLED:
            return
        for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
            logging.getLogger(name).addFilter(_QueryTokenFilter())
        _FILTER_INSTALLED = True


def token_variants(token: str) -> list[str]:
    """The forms a token can take in logs: raw, percent-encoded, form-encoded."""
    variants = {token, quote(token, safe=""), quote(token), quote_plus(token)}
    return sorted((v for v in variants if v), key=len, reverse=True)


def mask_token(token: str) -> None:
    """Register every form of ``token`` with Airflow's secrets masker."""
    from airflow.sdk.log import mask_secret

    for variant in token_variants(token):
        mask_secret(variant)


async def amask_token(token: str) -> None:
    """:func:`mask_token` for async code (triggers): ``amask_secret`` cannot deadlock the supervisor comms."""
    from airflow.sdk.log import amask_secret

    for variant in token_variants(token):
        await amask_secret(variant)


class Secrets:
    """Tokens of one hook; :meth:`scrub` removes them (in every encoding) from a text.

    :param register: also register them with Airflow's masker (sync hooks); async hooks pass ``False``
        and await :func:`amask_token` instead.
    """

    def __init__(self, *tokens: str | None, register: bool = True) -> None:
        self._variants: list[str] = []
        for token in tokens:
            if token:
                if register:
                    mask_token(token)
                self._variants.extend(token_variants(token))
        self._variants.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for variant in self._variants:
            text = text.replace(variant, "***")
        return _QUERY_TOKEN_RE.sub(r"\1***", text)


def snippet(text: str, secrets: Secrets, limit: int = BODY_SNIPPET) -> str:
    """A short, secret-free, single-line excerpt of a response body for an error message."""
    text = secrets.scrub(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------------


class SlidingWindowLimiter:
    """At most ``max_requests`` request starts in any rolling ``window`` seconds; thread-safe.

    A sliding-window log: a start is recorded (under the lock, with the real clock) only when fewer than
    ``max_requests`` starts lie in the last ``window`` seconds; otherwise the caller sleeps until the
    oldest one leaves the window and tries again. The send follows the record immediately, so the API
    sees the same spacing. Works for threads (:meth:`acquire`) and asyncio (:meth:`aacquire`).
    An optional ``max_in_flight`` caps concurrent requests (released by :meth:`release`).
    ``history`` keeps the recent start times (``clock``) for tests and benchmarks; the keyword-only
    ``clock`` and ``sleep`` (default :func:`time.monotonic` / :func:`time.sleep`) let tests drive the
    thread path on a fake clock.

    With ``spread`` (the default) starts are also paced on an even grid of one per ``window / max_requests``
    (a start may come a quarter interval early, so late wake-ups do not accumulate): the same rate,
    but evenly instead of in bursts of ``max_requests``. Bursts come back as bursts
    of answers whose JSON parsing (which holds the GIL) delays the sends of the next burst by tens of
    milliseconds, unevenly, and the server then clocks some of them closer together than the window
    (429); evenly paced requests keep the whole margin of the window.
    """

    def __init__(
        self,
        max_requests: int,
        window: float = 1.05,
        max_in_flight: int | None = None,
        *,
        spread: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests < 1 or window <= 0:
            raise ValueError("a rate limit needs max_requests >= 1 and window > 0")
        self.max_requests = max_requests
        self.window = window
        self.max_in_flight = max_in_flight
        self.spread = spread
        self._clock = clock  # injectable (with ``sleep``) so tests can drive the limiter on a fake clock
        self._sleep = sleep
        self._next_slot = 0.0  # monotonic time of the next start on the even grid (spread only)
        # first come, first served among threads (tickets): without it, the threads waiting for a slot
        # race for it, and a page can lose many times in a row, holding its whole day back
        self._turn = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()
        self._lock = threading.Lock()
        self._starts: collections.deque[float] = collections.deque()
        self._in_flight = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self.history: collections.deque[float] = collections.deque(maxlen=100_000)
        self.base_window = window
        self.max_window = window * 1.3

    def penalize(self) -> None:
        """The server said 429 (rate): it clocks our requests closer together than we sent them.

        Widen the window a little (up to +30 %), so pacing adapts to the server's jitter.
        """
        with self._lock:
            self.window = min(self.max_window, self.window + 0.03 * self.base_window)

    def reward(self) -> None:
        """A request went through: drift the window back towards its base, slowly."""
        if self.window > self.base_window:
            with self._lock:
                self.window = max(self.base_window, self.window - 0.0005 * self.base_window)

    def _try_start(self) -> float:
        """Record a start and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self._clock()
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            interval = self.window / self.max_requests
            if self.spread:
                # GCRA-style pacing on an ideal grid (one slot per interval), a quarter interval of
                # tolerance: a thread that wakes a few ms late does not push every later start back.
                gap = self._next_slot - 0.25 * interval - now
                if gap > 0:
                    return gap
            if len(self._starts) < self.max_requests:
                self._starts.append(now)
                self.history.append(now)
                self._next_slot = max(self._next_slot, now) + interval
                return 0.0
            return max(self._starts[0] + self.window - now, 0.001)

    def acquire(self) -> None:
        """Block until a request may start (and, if capped, until a parallel slot is free).

        Threads are served in arrival order: only the first in line polls the window.
        """
        if self._in_flight is not None:
            self._in_flight.acquire()
        with self._turn:
            ticket = self._next_ticket
            self._next_ticket += 1
        try:
            with self._turn:
                while self._serving != ticket:
                    self._turn.wait()
            while (delay := self._try_start()) > 0:
                self._sleep(delay)
        except BaseException:
            if self._in_flight is not None:
                self._in_flight.release()
            with self._turn:
                self._done_with(ticket)
            raise
        with self._turn:
            self._done_with(ticket)

    def _done_with(self, ticket: int) -> None:
        """Pass the turn on (called with ``_turn`` held); a ticket given up early is skipped when reached."""
        if ticket != self._serving:
            self._abandoned.add(ticket)
            return
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.remove(self._serving)
            self._serving += 1
        self._turn.notify_all()

    async def aacquire(self) -> None:
        """:meth:`acquire` for asyncio code (never blocks the event loop)."""
        if self._in_flight is not None:
            while not self._in_flight.acquire(blocking=False):
                await asyncio.sleep(0.02)
        while (delay := self._try_start()) > 0:
            await asyncio.sleep(delay)

    def release(self) -> None:
        """End of a request started with :meth:`acquire` (frees the parallel slot, if capped)."""
        if self._in_flight is not None:
            self._in_flight.release()

    def update(self, max_requests: int, window: float) -> None:
        """Tighten the rate in place (a hook asking for a stricter rate wins for the whole process).

        The in-flight cap is fixed when the limiter is created (swapping a semaphore that threads hold
        would break its accounting).
        """
        with self._lock:
            if max_requests / window < self.max_requests / self.base_window:
                self.max_requests, self.window, self.base_window = max_requests, window, window
                self.max_window = window * 1.3


_GC_LOCK = threading.Lock()
_GC_DEPTH = 0
_GC_SAVED: list[tuple[int, ...]] = []


@contextlib.contextmanager
def young_gc_only() -> Iterator[None]:
    """While the block runs, the cyclic garbage collector only collects its youngest generation.

    Why: a paced extraction parses ~1.4 MB of JSON per page (tens of thousands of containers) in
    several threads. Records that live until their day is complete get promoted to the older
    generations and keep triggering full collections, each scanning everything held while every thread
    waits on the GIL: pauses of 0.3-0.6 s in which the limiter's slots go unused, and a request the
    limiter recorded just before a pause reaches the API late, clocked closer to the next ones than
    sent (a 429). Inside the block generation 0 is still collected automatically (small, frequent,
    sub-millisecond passes, so short-lived cycles are freed); generations 1 and 2 wait until the block
    ends. Records are acyclic JSON and are freed by reference counting as always. On exit the previous
    thresholds come back (nested and thread-safe: the outermost block restores them).
    """
    global _GC_DEPTH
    with _GC_LOCK:
        if _GC_DEPTH == 0:
            saved = gc.get_threshold()
            _GC_SAVED[:] = [saved]
            gc.set_threshold(saved[0], 2**31 - 1, 2**31 - 1)
        _GC_DEPTH += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_DEPTH -= 1
            if _GC_DEPTH == 0 and _GC_SAVED:
                gc.set_threshold(*_GC_SAVED.pop())


_LIMITERS: dict[tuple[str, str, str], Any] = {}
_LIMITERS_LOCK = threading.Lock()


def get_limiter(
    api: str,
    base_url: str,
    requests_per_second: float,
    *,
    window: float = 1.05,
    max_in_flight: int | None = None,
    group: str | None = None,
) -> Any:
    """The limiter of one API host or limiter group (``api`` is ``"calltouch"`` or ``"metrika"``).

    ``requests_per_second`` (e.g. 5.0) becomes "at most ceil(rps) starts per ``window`` scaled to rps".
    ``group`` (the connection extra ``rate_limit_group``; default: the API host) names the egress IP:
    every connection of one group shares one limit. For Calltouch, when a shared backend is configured
    (``CALLTOUCH_METRIKA_RATE_LIMIT_BACKEND`` / ``[calltouch_metrika] rate_limit_backend``), the limit is
    shared by every process through it (:mod:`calltouch_metrika.hooks._shared_ratelimit`); otherwise,
    and always for Metrika (its limits are per user and generous), it is process-wide
    (:class:`SlidingWindowLimiter`).

    :raises ~calltouch_metrika.hooks._shared_ratelimit.RateLimitBackendError: a backend URL we cannot use.
    """
    from calltouch_metrika.hooks._shared_ratelimit import configured_backend, make_shared_limiter

    if requests_per_second <= 0:
        raise ValueError("requests_per_second must be > 0")
    max_requests = max(1, round(requests_per_second))
    window = window * max_requests / requests_per_second
    group = (group or urlsplit(base_url).netloc).strip().lower()
    backend = configured_backend() if api == "calltouch" else None
    key = (api, group, backend or "")
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            if backend:
                limiter = make_shared_limiter(backend, api, group, max_requests, window, max_in_flight)
            else:
                limiter = SlidingWindowLimiter(max_requests, window, max_in_flight)
            _LIMITERS[key] = limiter
            log.info(
                "%s rate limit: %d request(s) per %.2f s, group %r, %s",
                api,
                max_requests,
                window,
                group,
                f"shared through {limiter.backend}" if backend else "in this process",
            )
        else:
            limiter.update(max_requests, window)
        return limiter


# --------------------------------------------------------------------------------------------------
# Retry policy
# --------------------------------------------------------------------------------------------------


class _Retryable(Exception):
    """Internal: a failed attempt that may be retried. ``kind`` is 429, 5xx, connect, timeout, dropped, truncated."""

    def __init__(
        self, kind: str, detail: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff and jitter; ``Retry-After`` honoured (capped)."""

    max_attempts: int = 6
    wait_min: float = 1.0
    wait_max: float = 30.0
    retry_after_max: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.wait_min < 0 or self.wait_max < self.wait_min:
            raise ValueError("retry waits need 0 <= retry_wait_min <= retry_wait_max")

    def wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        ceiling = min(self.wait_max, self.wait_min * (2 ** (retry_state.attempt_number - 1)))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter"
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.retry_after_max))
        return delay


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Error parsing
# --------------------------------------------------------------------------------------------------


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def is_points_exhausted(body: Any) -> bool:
    """The sandbox's (and our assumed production) shape for an exhausted daily points budget."""
    if not isinstance(body, dict):
        return False
    for candidate in (body, body.get("data")):
        if isinstance(candidate, dict) and str(candidate.get("type", "")).lower() == "pointslimitexceeded":
            return True
    return False


def _sets_status_code(
    parse: Callable[..., CalltouchMetrikaError],
) -> Callable[..., CalltouchMetrikaError]:
    """An error parser whose typed error also carries the answer's HTTP status as ``status_code``."""

    @functools.wraps(parse)
    def parser(status: int, text: str, *, what: str, secrets: Secrets) -> CalltouchMetrikaError:
        exc = parse(status, text, what=what, secrets=secrets)
        exc.status_code = status  # type: ignore[attr-defined]
        return exc

    return parser


@_sets_status_code
def calltouch_error(status: int, text: str, *, what: str, secrets: Secrets) -> CalltouchMetrikaError:
    """Translate a non-retryable Calltouch error answer (seed 001 bodies and plain ones) into a typed error.

    The error's ``status_code`` attribute is set.
    """
    body = _json_or_none(text)
    message = None
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        message = data["message"]
    auth_text = message is not None and "token" in message.lower() and "не найден" in message.lower()
    if status in (401, 403) or auth_text:
        reason = f": {secrets.scrub(message)}" if message else ""
        return AuthenticationError(
            f"{what}: Calltouch rejected the API token (HTTP {status}{reason}). Check the connection's "
            f"API token (password) and that its user may access this site."
        )
    if status == 404:
        api_message = (
            ((data or {}).get("apiErrorData") or {}).get("errorMessage") if isinstance(data, dict) else None
        )
        detail = api_message or message or snippet(text, secrets, 200)
        return NotFoundError(f"{what}: Calltouch answered 404 Not Found: {secrets.scrub(str(detail))}")
    if isinstance(data, dict) and data.get("type") == "validationError":
        raw = (data.get("validationErrorData") or {}).get("violations") or []
        violations = [
            (secrets.scrub(str(v.get("fieldPath", ""))), secrets.scrub(str(v.get("message", ""))))
            for v in raw
            if isinstance(v, dict)
        ]
        return ValidationError(
            f"{what}: Calltouch rejected the request (HTTP {status}, validation error):", violations
        )
    if isinstance(data, dict) and data.get("type") == "apiError":
        api = data.get("apiErrorData") or {}
        detail = api.get("errorMessage") or "API error"
        extra = f" ({api['errorDescription']})" if api.get("errorDescription") else ""
        return ValidationError(
            f"{what}: Calltouch API error {api.get('errorCode', '?')} (HTTP {status}): {secrets.scrub(str(detail))}{extra}"
        )
    if message:
        return ValidationError(
            f"{what}: Calltouch rejected the request (HTTP {status}): {secrets.scrub(message)}"
        )
    return ValidationError(
        f"{what}: Calltouch rejected the request (HTTP {status}): {snippet(text, secrets)}"
    )


@_sets_status_code
def metrika_error(status: int, text: str, *, what: str, secrets: Secrets) -> CalltouchMetrikaError:
    """Translate a non-retryable Metrika error answer (``{"errors": [...], "code", "message"}``).

    The error's ``status_code`` attribute is set.
    """
    body = _json_or_none(text)
    errors = body.get("errors") if isinstance(body, dict) else None
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    top = body.get("message") if isinstance(body, dict) else None
    summary = secrets.scrub(str(top)) if top else snippet(text, secrets, 200)
    if status in (401, 403):
        hint = (
            "the OAuth token is invalid or expired"
            if status == 401
            else "the token's user has no access to this counter"
        )
        return AuthenticationError(
            f"{what}: Metrika rejected the request (HTTP {status}: {summary}); {hint}. Check the connection's "
            f"OAuth token (password) and the counter id."
        )
    if status == 404:
        return NotFoundError(f"{what}: Metrika answered 404 Not Found ({summary})")
    violations = [
        (
            secrets.scrub(str(e.get("location") or "")),
            secrets.scrub(f"{e.get('error_type', 'error')}: {e.get('message', '')}"),
        )
        for e in errors
    ]
    return ValidationError(f"{what}: Metrika rejected the request (HTTP {status}): {summary}", violations)


def metrika_quota_message(text: str, secrets: Secrets) -> str:
    body = _json_or_none(text)
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            e = errors[0]
            return secrets.scrub(f"{e.get('error_type', 'quota')}: {e.get('message', '')}")
    return snippet(text, secrets, 200)


# --------------------------------------------------------------------------------------------------
# Multipart streaming
# --------------------------------------------------------------------------------------------------


class MultipartFile:
    """A ``multipart/form-data`` body with one file field, read lazily (constant memory) with a known length.

    ``requests`` streams a file-like body that has a length, so a 1 GB CSV is never held in memory.
    Seekable sources can be :meth:`rewind`-ed for a retry.
    """

    def __init__(
        self,
        source: bytes | str | os.PathLike | IO[bytes],
        *,
        field_name: str = "file",
        filename: str = "calls.csv",
        content_type: str = "text/csv",
    ) -> None:
        self.boundary = "ctm" + os.urandom(12).hex()
        self._owned: IO[bytes] | None = None
        if isinstance(source, str) and "\n" in source:  # CSV text, not a path (no path holds a newline)
            source = source.encode("utf-8")
        if isinstance(source, bytes | bytearray | memoryview):
            import io

            self._fh: IO[bytes] = io.BytesIO(bytes(source))
        elif isinstance(source, str | os.PathLike):
            self._owned = self._fh = open(os.fspath(source), "rb")  # noqa: SIM115 - closed in close()
            filename = os.path.basename(os.fspath(source)) or filename
        elif hasattr(source, "read"):
            self._fh = source
        else:
            raise TypeError(f"csv must be bytes, a path or a binary file object, not {type(source).__name__}")
        if not self._fh.seekable():
            import io

            data = self._fh.read()
            self._fh = io.BytesIO(data if isinstance(data, bytes) else str(data).encode())
        self._start = self._fh.tell()
        self._fh.seek(0, os.SEEK_END)
        self._size = self._fh.tell() - self._start
        self._fh.seek(self._start)
        safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        self._head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{safe_name}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._pos = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def rewind(self) -> None:
        self._fh.seek(self._start)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        want = len(self) - self._pos if size is None or size < 0 else size
        while want > 0 and self._pos < len(self):
            head_len, body_end = len(self._head), len(self._head) + self._size
            if self._pos < head_len:
                chunk = self._head[self._pos : self._pos + want]
            elif self._pos < body_end:
                chunk = self._fh.read(min(want, body_end - self._pos))
                if not chunk:
                    raise MalformedResponseError("the CSV file shrank while it was being uploaded")
            else:
                offset = self._pos - body_end
                chunk = self._tail[offset : offset + want]
            out += chunk
            self._pos += len(chunk)
            want -= len(chunk)
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(64 * 1024):
            yield chunk

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


# --------------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Transport (sync)
# --------------------------------------------------------------------------------------------------

ErrorParser = Callable[..., CalltouchMetrikaError]


@dataclass
class Request:
    """One API call, described without a URL so that nothing with a token ever gets logged."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    json_body: Any = None
    body: MultipartFile | None = None
    idempotent: bool = True
    what: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ApiSpec:
    """What differs between the two APIs: name, error parser and how a 429 reads."""

    name: str
    error_parser: ErrorParser
    quota_message: Callable[[str, Secrets], str]


CALLTOUCH = ApiSpec(
    "Calltouch", calltouch_error, lambda text, secrets: snippet(text, secrets, 200) or "rate limited"
)
METRIKA = ApiSpec("Metrika", metrika_error, metrika_quota_message)


def _sent_for_sure(exc: requests.ConnectionError) -> bool:
    """False when the failure happened while connecting (the server cannot have seen the request)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError -> its reason
    return not isinstance(reason, NewConnectionError | ConnectionRefusedError)


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

    def _retry_kwargs(self) -> dict[str, Any]:
        """tenacity arguments of :class:`RetryPolicy`: bounded attempts, backoff, only retryable failures."""
        return {
            "stop": tenacity.stop_after_attempt(self.policy.max_attempts),
            "wait": self.policy.wait,
            "retry": tenacity.retry_if_exception_type(_Retryable),
            "reraise": True,
        }

    def parse_json(self, req: Request, status: int, text: str) -> Any:
        """The JSON of a 2xx answer; a body that is not JSON is malformed (or, for an upload, of unknown outcome)."""
        try:
            return json.loads(text)
        except ValueError:
            message = (
                f"{req.what}: {self.api.name} answered HTTP {status} to {req.method} {safe_path(req.path)} "
                f"with a body that is not JSON ({snippet(text, self.secrets, 120)!r})"
            )
            if not req.idempotent:
                raise OutcomeUnknownError(
                    message + "; the request may have been carried out: look it up before sending it again"
                ) from None
            raise MalformedResponseError(message) from None

    def _exhausted(self, req: Request, exc: _Retryable) -> CalltouchMetrikaError:
        where = f"{req.what}: {self.api.name} {req.method} {safe_path(req.path)}"
        tries = f"after {self.policy.max_attempts} attempt(s)"
        if exc.kind == "429":
            hint = (
                "Lower the request rate (the `calltouch_api` pool, fewer parallel pipelines) or retry later."
                if self.api is CALLTOUCH
                else "Metrika allows 30 requests/s, 3 in parallel and 5000 a day per user: retry later."
            )
            return QuotaExceededError(f"{where} stayed rate-limited (HTTP 429: {exc.detail}) {tries}. {hint}")
        if exc.kind == "truncated":
            return MalformedResponseError(f"{where}: the response body was cut short {tries} ({exc.detail})")
        return ServerError(f"{where} failed {tries}: {exc.detail}. The API may be down; retry later.")

    def _adapt(self, status: int, text: str) -> None:
        if 200 <= status < 300:
            self.limiter.reward()
        elif status == 429 and not is_points_exhausted(_json_or_none(text)):
            self.limiter.penalize()


class Transport(_TransportBase):
    """Send :class:`Request` s through one ``requests.Session`` with limiter, timeout, retries and typed errors.

    Keyword arguments: ``session`` and the settings of every transport (``api``, ``base_url``, ``limiter``,
    ``timeout``, ``policy``, ``secrets``, ``logger``; see :class:`AsyncTransport`).
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
        retrying = tenacity.Retrying(before_sleep=self._before_sleep(req), **self._retry_kwargs())
        try:
            return retrying(self._attempt, req)
        except _Retryable as exc:
            raise self._exhausted(req, exc) from None

    def request_json(self, req: Request) -> Any:
        """Send with retries and parse the JSON body of the 2xx answer."""
        response = self.request_response(req)
        return self.parse_json(req, response.status_code, response.text)

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

    def _unknown(self, req: Request, detail: str) -> OutcomeUnknownError:
        return OutcomeUnknownError(
            f"{req.what}: {self.api.name} {req.method} {safe_path(req.path)}: {detail} after the request was "
            f"sent, so it may or may not have been carried out. It was not re-sent: look the result up "
            f"(e.g. by its comment) before trying again."
        )

    def _attempt(self, req: Request) -> requests.Response:
        if req.body is not None:
            req.body.rewind()
        headers = dict(req.headers or {})
        if req.body is not None:
            headers["Content-Type"] = req.body.content_type
            headers["Content-Length"] = str(len(req.body))
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
                    data=req.body,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.ConnectionError as exc:  # includes ConnectTimeout
                self._count(None)
                if isinstance(exc, requests.ConnectTimeout):
                    raise _Retryable("connect", f"connection timed out after {self.timeout:g} s") from None
                if not _sent_for_sure(exc):
                    raise _Retryable("connect", "connection refused") from None
                if not req.idempotent:
                    raise self._unknown(req, "the connection was closed without an answer") from None
                raise _Retryable("dropped", "the connection was closed without an answer") from None
            except requests.Timeout:
                self._count(None)
                if not req.idempotent:
                    raise self._unknown(req, f"no answer within {self.timeout:g} s") from None
                raise _Retryable("timeout", f"no answer within {self.timeout:g} s") from None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
                self._count(None)
                if not req.idempotent:
                    raise self._unknown(req, "the answer was cut short") from None
                raise _Retryable(
                    "truncated", "the answer was cut short (connection closed mid-body)"
                ) from None
        finally:
            self.limiter.release()
        self._count(response.status_code)
        self._adapt(response.status_code, response.text)
        return self._check(req, response.status_code, response.headers, response.text, response)

    def _check(self, req: Request, status: int, headers: Any, text: str, response: Any) -> Any:
        if 200 <= status < 300:
            return response
        classify(self.api, req, status, headers, text, self.secrets)
        raise AssertionError("unreachable")  # pragma: no cover


def classify(api: ApiSpec, req: Request, status: int, headers: Any, text: str, secrets: Secrets) -> None:
    """Raise the right thing for a non-2xx answer: :class:`_Retryable` or a typed error."""
    body = _json_or_none(text)
    if status == 429:
        if is_points_exhausted(body):
            raise QuotaExceededError(
                f"{req.what}: the Calltouch daily API points budget is exhausted "
                f"({snippet(text, secrets, 200)}). It resets daily; retry tomorrow or ask Calltouch for more points."
            )
        raise _Retryable(
            "429",
            f"HTTP 429 {api.quota_message(text, secrets)}",
            status=429,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    if status >= 500:
        detail = f"HTTP {status} ({snippet(text, secrets, 120)})" if text.strip() else f"HTTP {status}"
        if not req.idempotent and not (status == 503 and text.strip()):
            raise OutcomeUnknownError(
                f"{req.what}: {api.name} {req.method} {safe_path(req.path)} answered {detail}, so it may or may "
                f"not have been carried out. It was not re-sent: look the result up before trying again."
            )
        raise _Retryable(
            "5xx", detail, status=status, retry_after=parse_retry_after(headers.get("Retry-After"))
        )
    if 300 <= status < 400:
        raise MalformedResponseError(
            f"{req.what}: {api.name} answered an unexpected redirect (HTTP {status}) to "
            f"{req.method} {safe_path(req.path)}; check the connection's host."
        )
    raise api.error_parser(status, text, what=req.what, secrets=secrets)


def make_session(pool_size: int) -> requests.Session:
    """A plain session: no auth, no headers from connection extras, a pool big enough for our threads."""
    install_log_filters()
    session = requests.Session()
    session.trust_env = True
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "calltouch-metrika-airflow"
    return session


# --------------------------------------------------------------------------------------------------
# What every hook shares
# --------------------------------------------------------------------------------------------------


def connection_token(conn: Any, conn_id: str, *, kind: str) -> str:
    """The API token from the connection's ``password`` (stripped); a clear error naming ``kind`` if empty."""
    token = (conn.password or "").strip()
    if not token:
        raise AuthenticationError(
            f"Connection {conn_id!r} has no {kind}: put it in the connection's password field"
        )
    return token


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


# --------------------------------------------------------------------------------------------------
# Transport (async): our policy around the provider's HttpAsyncHook session
# --------------------------------------------------------------------------------------------------

#: Headers every async request carries (the sync session sets the same User-Agent).
USER_AGENT = {"User-Agent": "calltouch-metrika-airflow"}


class AsyncTransport(_TransportBase):
    """The async twin of :class:`Transport`, for triggers: sends through the provider's ``AsyncHttpSession``.

    Each attempt is one ``AsyncHttpSession.run`` of the hook (an ``HttpAsyncHook`` with ``retry_limit=1``
    and ``check_response`` off, so the provider neither retries nor raises): this class keeps our
    pacing (:meth:`SlidingWindowLimiter.aacquire`), our retry policy (tenacity: 429 with ``Retry-After``,
    5xx, connection errors, timeouts), the non-idempotent rule and the typed, secret-free errors.
    Keyword arguments: ``hook`` (the ``HttpAsyncHook``) and the settings of every transport.
    """

    def __init__(self, *, hook: Any, **settings: Any) -> None:
        super().__init__(**settings)
        self.hook = hook

    async def request_response(self, req: Request, session: Any = None) -> Any:
        """Send with retries; the successful (2xx) ``aiohttp.ClientResponse``, its body already read.

        ``session``: an ``aiohttp.ClientSession`` to send through (as ``HttpAsyncHook.run`` accepts);
        by default the hook's :meth:`~HttpAsyncHook.session` opens one for this call.
        """
        response, _ = await self._send(req, session)
        return response

    async def request_json(self, req: Request) -> Any:
        """Send with retries and parse the JSON body of the 2xx answer."""
        response, text = await self._send(req, None)
        return self.parse_json(req, response.status, text)

    async def _send(self, req: Request, session: Any) -> tuple[Any, str]:
        install_log_filters()
        retrying = tenacity.AsyncRetrying(**self._retry_kwargs())
        try:
            async with self._http_session(req.method, session) as http:
                async for attempt in retrying:
                    with attempt:
                        return await self._attempt(http, req)
        except _Retryable as exc:
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

    def _unknown(self, req: Request, detail: str) -> OutcomeUnknownError:
        return OutcomeUnknownError(
            f"{req.what}: {self.api.name} {req.method} {safe_path(req.path)}: {detail} after the request was "
            f"sent, so it may or may not have been carried out. It was not re-sent: look the result up "
            f"before trying again."
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
            except aiohttp.ClientConnectorError:
                raise _Retryable("connect", "could not connect") from None
            except aiohttp.ConnectionTimeoutError:  # before TimeoutError: nothing was sent yet
                raise _Retryable("connect", f"connection timed out after {self.timeout:g} s") from None
            except TimeoutError:
                if not req.idempotent:
                    raise self._unknown(req, f"no answer within {self.timeout:g} s") from None
                raise _Retryable("timeout", f"no answer within {self.timeout:g} s") from None
            except aiohttp.ClientPayloadError:
                if not req.idempotent:
                    raise self._unknown(req, "the answer was cut short") from None
                raise _Retryable(
                    "truncated", "the answer was cut short (connection closed mid-body)"
                ) from None
            except aiohttp.ClientError:
                if not req.idempotent:
                    raise self._unknown(req, "the connection was closed without an answer") from None
                raise _Retryable("dropped", "the connection was closed without an answer") from None
        finally:
            self.limiter.release()
        status = response.status
        text = await response.text(errors="replace")
        self._adapt(status, text)
        if 200 <= status < 300:
            return response, text
        classify(self.api, req, status, response.headers, text, self.secrets)
        raise AssertionError("unreachable")  # pragma: no cover


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
            base_url = base_url_from_connection(conn)
            self._transport = AsyncTransport(
                hook=self,
                api=self.api,
                base_url=base_url,
                limiter=get_limiter(
                    self.limiter_api,
                    base_url,
                    self.requests_per_second,
                    max_in_flight=self.max_in_flight,
                    group=extra.get("rate_limit_group"),
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
