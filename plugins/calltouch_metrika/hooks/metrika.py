"""Yandex Metrika hooks: offline calls upload, one upload's status, the list of uploads.

Public surface (``docs/design.md``, "Hooks"): :class:`MetrikaHook` (sync) and :class:`MetrikaAsyncHook`
(for triggers). Auth: ``Authorization: OAuth <token>`` with the token from the connection's ``password``
(api-notes §3.2). Limits (api-notes §3.5): at most 30 requests/s and 3 in parallel per process and host.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook

from calltouch_metrika.constants import MAX_COMMENT
from calltouch_metrika.exceptions import (
    AuthenticationError,
    CalltouchMetrikaError,
    MalformedResponseError,
    NotFoundError,
    ValidationError,
)
from calltouch_metrika.hooks._errors import ApiSpec, QuotaAnswer, json_or_none
from calltouch_metrika.hooks._masking import Secrets, snippet
from calltouch_metrika.hooks._mixins import (
    AsyncTransportHookMixin,
    TransportHookMixin,
    check_token,
    connection_token,
    transport_settings,
)
from calltouch_metrika.hooks._ratelimit import get_limiter
from calltouch_metrika.hooks._transport import (
    MultipartUpload,
    Request,
    Transport,
    base_url_from_connection,
    make_session,
)

CLIENT_ID_TYPES = ("CLIENT_ID", "USER_ID", "YCLID")
PREFIX = "/management/v1/counter/{counter_id}/offline_conversions"
UPLOAD_PATH = PREFIX + "/upload_calls"
UPLOADING_PATH = PREFIX + "/calls_uploading/{uploading_id}"
UPLOADINGS_PATH = PREFIX + "/calls_uploadings"
JOIN_THRESHOLD_PATH = PREFIX + "/calls_visit_join_threshold"
#: The token's counters (the Test button's check).
COUNTERS_PATH = "/management/v1/counters"


def _counter(counter_id: Any) -> int:
    try:
        value = int(str(counter_id).strip())
    except (TypeError, ValueError):
        raise ValueError(f"Metrika counter id must be a positive integer, not {counter_id!r}") from None
    if value <= 0:
        raise ValueError(f"Metrika counter id must be a positive integer, not {counter_id!r}")
    return value


def _token(conn: Any, conn_id: str) -> str:
    return connection_token(conn, conn_id, kind="Metrika OAuth token")


def _upload_id(value: Any) -> int | None:
    """An upload's ``id`` as an int: a JSON integer or a string of ASCII digits; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    return None


def _uploading(body: Any, what: str, *, require_status: bool = True) -> dict:
    """The ``uploading`` record of an answer, its ``id`` an int; :class:`MalformedResponseError` if shapeless.

    The record must be an object with a positive integer ``id`` and (``require_status``, every status read)
    a non-empty string ``status`` (api-notes §3: ``OfflineCallsUploading``): a record without them cannot be
    polled to an end, so it is a garbled answer (retried by the transport, then the error), never handed to
    a sensor that would wait for it until its timeout.
    """
    record = body.get("uploading") if isinstance(body, dict) else None
    if not isinstance(record, dict):
        raise MalformedResponseError(f"{what}: Metrika answered without an 'uploading' record")
    upload_id = _upload_id(record.get("id"))
    if upload_id is None:
        raise MalformedResponseError(
            f"{what}: Metrika's 'uploading' record has no positive integer id ({record.get('id')!r:.40})"
        )
    status = record.get("status")
    if require_status and (not isinstance(status, str) or not status.strip()):
        raise MalformedResponseError(
            f"{what}: Metrika's 'uploading' record {upload_id} has no status ({status!r:.40})"
        )
    return {**record, "id": upload_id}


def _uploadings_page(body: Any, what: str) -> list[dict]:
    """One page of the uploads list; every item an object with a positive integer ``id`` (made an int)."""
    page = body.get("uploadings") if isinstance(body, dict) else None
    if not isinstance(page, list):
        raise MalformedResponseError(f"{what}: Metrika answered without an 'uploadings' list")
    out: list[dict] = []
    for i, item in enumerate(page):
        if not isinstance(item, dict):
            raise MalformedResponseError(
                f"{what}: item {i} of 'uploadings' is not an object ({type(item).__name__})"
            )
        upload_id = _upload_id(item.get("id"))
        if upload_id is None:
            raise MalformedResponseError(
                f"{what}: item {i} of 'uploadings' has no positive integer id ({item.get('id')!r:.40})"
            )
        out.append({**item, "id": upload_id})
    return out


# --------------------------------------------------------------------------------------------------
# Metrika's error answers (given to the shared transport as METRIKA)
# --------------------------------------------------------------------------------------------------


def metrika_error(status: int, text: str, *, what: str, secrets: Secrets) -> CalltouchMetrikaError:
    """Translate a non-retryable Metrika error answer (``{"errors": [...], "code", "message"}``).

    The error's ``status_code`` is ``status``.
    """
    body = json_or_none(text)
    errors = body.get("errors") if isinstance(body, dict) else None
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    top = body.get("message") if isinstance(body, dict) else None
    summary = secrets.scrub(str(top)) if top else snippet(text, secrets, 200)
    if status in (401, 403):
        types = {str(e.get("error_type")) for e in errors}
        hint = (  # api-notes §3.5: 401 unauthorized (no token), 403 invalid_token or access_denied
            "the OAuth token is invalid or expired"
            if status == 401 or "invalid_token" in types
            else "the token's user has no access to this counter"
        )
        return AuthenticationError(
            f"{what}: Metrika rejected the request (HTTP {status}: {summary}); {hint}. Check the connection's "
            f"OAuth token (password) and the counter id.",
            status_code=status,
        )
    if status == 404:
        return NotFoundError(f"{what}: Metrika answered 404 Not Found ({summary})", status_code=status)
    violations = [
        (
            secrets.scrub(str(e.get("location") or "")),
            secrets.scrub(f"{e.get('error_type', 'error')}: {e.get('message', '')}"),
        )
        for e in errors
    ]
    return ValidationError(
        f"{what}: Metrika rejected the request (HTTP {status}): {summary}", violations, status_code=status
    )


#: Metrika's quota types (the 429 body's ``error_type``; api-notes §3.5, "Types of errors" and "Quotas").
#: ``"short"``: lifted within seconds, retried with backoff (``Retry-After``). ``"daily"``: lifted at
#: 00:00 GMT, never retried within a task. ``"hourly"``: lifted at the start of the next hour, not retried.
#: Quotas whose period the documentation does not give are retried like short ones (bounded attempts),
#: then reported with their name.
METRIKA_QUOTAS: dict[str, tuple[str, str]] = {
    "quota_requests_by_ip": ("short", "30 requests/s from one IP address"),
    "quota_parallel_requests": ("short", "3 parallel requests per user"),
    "quota_requests_by_uid": ("daily", "5,000 requests a day per user"),
    "quota_delegate_requests": ("hourly", "3 added representatives an hour per counter"),
    "quota_grants_requests": ("short", "requests for access to one counter"),
    "quota_requests_by_counter_id": ("short", "requests per counter"),
}


def quota_resets_at(period: str, now: datetime) -> datetime:
    """When a ``"daily"`` (next 00:00 GMT) or ``"hourly"`` (next full hour) Metrika quota is lifted, in UTC."""
    now = now.astimezone(UTC)
    if period == "hourly":
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def read_429(text: str, secrets: Secrets, *, now: datetime | None = None) -> QuotaAnswer:
    """A Metrika 429 by the quota its body names: short ones are retried, a daily/hourly one is final.

    The final message names the quota and when it resets as an absolute UTC time.
    """
    body = json_or_none(text)
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None
    if first is None:
        return QuotaAnswer(detail=snippet(text, secrets, 200))
    error_type = str(first.get("error_type") or "quota")
    detail = secrets.scrub(f"{error_type}: {first.get('message', '')}")
    period, what = METRIKA_QUOTAS.get(error_type, ("short", ""))
    if period == "short":
        return QuotaAnswer(detail=detail)
    resets = quota_resets_at(period, now or datetime.now(UTC))
    return QuotaAnswer(
        detail=detail,
        final=(
            f"Metrika's {error_type} quota ({what}) is exhausted (HTTP 429: {detail}). It resets at "
            f"{resets:%Y-%m-%d %H:%M} UTC ({'00:00 GMT' if period == 'daily' else 'the next full hour'}); "
            f"not retried within this task: run it again after that."
        ),
        resets_at=resets,
    )


#: What the shared transport needs to know about Metrika.
METRIKA = ApiSpec(
    name="Metrika",
    error_parser=metrika_error,
    read_429=read_429,
    rate_hint="Metrika allows 30 requests/s, 3 in parallel and 5000 a day per user: retry later.",
)


class MetrikaHook(TransportHookMixin, HttpHook):
    """Talks to the Metrika management API (offline calls).

    :param metrika_conn_id: connection of type ``yandexmetrika`` (or ``http``, or the old ``yandex_metrika``): host, password = OAuth token.
    :param timeout: seconds to wait for each answer; uploads of big files may need more.
    :param max_attempts: attempts per request for 429/5xx/connection errors/timeouts (idempotent ones).
    :param requests_per_second: process-wide ceiling for this host (Metrika allows 30 per IP).
    :param max_parallel: requests in flight at once, process-wide (Metrika allows 3 per user).
    :param retry_wait_min: first backoff (seconds); doubles per attempt, with jitter.
    :param retry_wait_max: longest backoff (seconds).
    :param retry_after_max: cap on a server's ``Retry-After``.
    :param list_page_size: ``limit`` used while following the uploads list.
    """

    conn_name_attr = "metrika_conn_id"
    default_conn_name = "metrika_default"
    conn_type = "yandexmetrika"
    hook_name = "Yandex Metrika"

    def __init__(
        self,
        metrika_conn_id: str = default_conn_name,
        *,
        timeout: float = 300.0,
        max_attempts: int = 6,
        requests_per_second: float = 30.0,
        max_parallel: int = 3,
        retry_wait_min: float = 1.0,
        retry_wait_max: float = 30.0,
        retry_after_max: float = 120.0,
        list_page_size: int = 1000,
    ) -> None:
        super().__init__(method="GET", http_conn_id=metrika_conn_id, tcp_keep_alive=False)
        if list_page_size < 1:
            raise ValueError("list_page_size must be >= 1")
        transport_settings(
            self,
            timeout=timeout,
            max_attempts=max_attempts,
            requests_per_second=requests_per_second,
            retry_wait_min=retry_wait_min,
            retry_wait_max=retry_wait_max,
            retry_after_max=retry_after_max,
        )
        self._transport: Transport | None = None
        self.metrika_conn_id = metrika_conn_id
        self.max_parallel = max_parallel
        self.list_page_size = list_page_size
        self._headers: dict[str, str] = {}
        self._extra: dict[str, Any] = {}

    def _setup(self) -> Transport:
        if self._transport is None:
            conn = self.get_connection(self.metrika_conn_id)
            token = _token(conn, self.metrika_conn_id)
            secrets = Secrets(token)  # registered with the masker before anything can quote it
            check_token(token, self.metrika_conn_id, kind="Metrika OAuth token")
            self.base_url = base_url_from_connection(conn)
            self._base_url_initialized = True
            self._extra = dict(conn.extra_dejson or {})
            self._headers = {"Authorization": f"OAuth {token}"}
            self._transport = Transport(
                api=METRIKA,
                base_url=self.base_url,
                session=make_session(self.max_parallel),
                limiter=get_limiter(
                    "metrika", self.base_url, self.requests_per_second, max_in_flight=self.max_parallel
                ),
                timeout=self.timeout,
                policy=self.policy,
                secrets=secrets,
                logger=self.log,
            )
        return self._transport

    def _what(self) -> str:
        return f"Metrika ({self.metrika_conn_id})"

    def _authorize(self, req: Request) -> Request:
        """Every Metrika request carries ``Authorization: OAuth <token>`` (the request's own headers win)."""
        self._setup()
        req.headers = {**self._headers, **(req.headers or {})}
        return req

    def upload_calls(
        self,
        counter_id: int,
        csv: bytes | str | os.PathLike | IO[bytes],
        *,
        comment: str | None = None,
        new_goal_name: str | None = None,
        client_id_type: str = "CLIENT_ID",
    ) -> dict:
        """Upload a calls CSV (streamed as the multipart field ``file``); return the ``uploading`` record.

        ``csv`` is the file's bytes, a path (``str`` without a newline, or ``PathLike``), CSV text (a
        ``str`` with newlines, sent as UTF-8), or a binary file object. Not idempotent: if the answer is
        lost after the file was sent, :class:`~calltouch_metrika.exceptions.OutcomeUnknownError` is
        raised (look the upload up with :meth:`find_calls_uploading` by its ``comment``); it is re-sent
        only when the server certainly did not act on it (429, 503 with a body, connection refused).
        """
        counter = _counter(counter_id)
        if client_id_type not in CLIENT_ID_TYPES:
            raise ValueError(
                f"client_id_type must be one of {', '.join(CLIENT_ID_TYPES)}, not {client_id_type!r}"
            )
        if comment is not None and len(comment) > MAX_COMMENT:
            raise ValueError(f"comment is {len(comment)} characters; Metrika keeps at most {MAX_COMMENT}")
        params = {"client_id_type": client_id_type}
        if comment is not None:
            params["comment"] = comment
        if new_goal_name:
            params["new_goal_name"] = new_goal_name
        body = MultipartUpload(csv)
        try:
            answer = self._request(
                Request(
                    "POST",
                    UPLOAD_PATH.format(counter_id=counter),
                    params=params,
                    body=body,
                    idempotent=False,
                    what=f"Metrika counter {counter}, calls upload",
                )
            )
        finally:
            body.close()
        return _uploading(answer, f"Metrika counter {counter}", require_status=False)

    def get_calls_uploading(self, counter_id: int, uploading_id: int) -> dict:
        """One upload's record (``status``, ``source_quantity``, ``line_quantity``, ...)."""
        counter = _counter(counter_id)
        what = f"Metrika counter {counter}, upload {uploading_id}"
        return self._request(
            Request(
                "GET",
                UPLOADING_PATH.format(counter_id=counter, uploading_id=int(uploading_id)),
                what=what,
                shape=lambda body: _uploading(body, what),
            )
        )

    def list_calls_uploadings(self, counter_id: int) -> list[dict]:
        """Every calls upload of the counter, following ``limit``/``offset`` to the end (API order)."""
        counter = _counter(counter_id)
        what = f"Metrika counter {counter}, uploads list"
        out: list[dict] = []
        offset = 0
        while True:
            page = self._request(
                Request(
                    "GET",
                    UPLOADINGS_PATH.format(counter_id=counter),
                    params={"limit": str(self.list_page_size), "offset": str(offset)},
                    what=what,
                    shape=lambda body: _uploadings_page(body, what),
                )
            )
            out.extend(page)
            if len(page) < self.list_page_size:
                return out
            offset += len(page)

    def find_calls_uploading(self, counter_id: int, *, comment: str) -> dict | None:
        """The newest upload with exactly this ``comment``, or ``None`` (how an operator resolves "outcome unknown")."""
        matches = [u for u in self.list_calls_uploadings(counter_id) if u.get("comment") == comment]
        if not matches:
            return None
        return max(matches, key=lambda u: (str(u.get("create_time") or ""), u["id"]))

    def get_calls_visit_join_threshold(self, counter_id: int) -> dict:
        """``{"date": "…"}``: the earliest call time Metrika can link to a visit on this counter.

        The current calls guide's readiness check (api-notes §3.3): after calls accounting is switched
        on, the linkable period grows gradually up to 21 days. The response shape is [I] (rym); what it
        answers when accounting is off is [?] (the sandbox answers 400 ``invalid_parameter``).
        """
        counter = _counter(counter_id)
        answer = self._request(
            Request(
                "GET",
                JOIN_THRESHOLD_PATH.format(counter_id=counter),
                what=f"Metrika counter {counter}, calls linkage threshold",
            )
        )
        if not isinstance(answer, dict):
            raise MalformedResponseError(f"Metrika counter {counter}: the linkage threshold is not an object")
        return answer

    def test_connection(self) -> tuple[bool, str]:
        """The Test button: names the token's counters (up to 20); with extra ``counter_id``, reads its
        uploads and reports its calls linkage threshold."""
        try:
            self._setup()
            answer = self._request(Request("GET", COUNTERS_PATH, params={"per_page": "20"}, what="Metrika"))
            if not isinstance(answer, dict) or not isinstance(answer.get("counters"), list):
                raise MalformedResponseError("Metrika: the counters list answered without 'counters'")
            ids = [str(c.get("id")) for c in answer["counters"] if isinstance(c, dict)]
            more = int(answer.get("rows") or len(ids)) - len(ids)
            listed = (", ".join(ids) or "none") + (f" and {more} more" if more > 0 else "")
            counter = self._extra.get("counter_id")
            if counter not in (None, ""):
                counter = _counter(counter)
                self._request(
                    Request(
                        "GET",
                        UPLOADINGS_PATH.format(counter_id=counter),
                        params={"limit": "1"},
                        what=f"Metrika counter {counter}",
                    )
                )
                try:
                    threshold = self.get_calls_visit_join_threshold(counter).get("date")
                    linkage = f"calls link from {threshold}"
                except (CalltouchMetrikaError, ValueError) as exc:
                    linkage = f"linkage threshold not available ({exc}); the 21-day rule applies"
                return (
                    True,
                    f"Metrika: token accepted, counter {counter} readable; {linkage} (counters: {listed})",
                )
            return True, f"Metrika: token accepted; counters: {listed}"
        except (CalltouchMetrikaError, ValueError) as exc:
            return False, str(exc)
        except Exception as exc:  # the Test button must answer, whatever happened
            return False, f"Metrika connection test failed: {type(exc).__name__}"


class MetrikaAsyncHook(AsyncTransportHookMixin, HttpAsyncHook):
    """Async counterpart of :class:`MetrikaHook` for triggers, built on the provider's ``HttpAsyncHook``.

    Requests go through ``HttpAsyncHook.session()`` / ``AsyncHttpSession.run`` (one attempt each,
    ``retry_limit=1``); :class:`~calltouch_metrika.hooks._mixins.AsyncTransportHookMixin` overrides what is
    wrong for us (connection extras as headers, no timeout, the provider's retries) and resolves the
    connection with the async API only (``get_async_connection``). Auth: ``Authorization: OAuth <token>``.
    """

    conn_name_attr = "metrika_conn_id"
    default_conn_name = "metrika_default"
    conn_type = "yandexmetrika"
    hook_name = "Yandex Metrika (async)"
    api = METRIKA
    limiter_api = "metrika"

    def __init__(
        self,
        metrika_conn_id: str = default_conn_name,
        *,
        timeout: float = 60.0,
        max_attempts: int = 6,
        requests_per_second: float = 30.0,
        max_parallel: int = 3,
        retry_wait_min: float = 1.0,
        retry_wait_max: float = 30.0,
        retry_after_max: float = 120.0,
    ) -> None:
        transport_settings(
            self,
            timeout=timeout,
            max_attempts=max_attempts,
            requests_per_second=requests_per_second,
            retry_wait_min=retry_wait_min,
            retry_wait_max=retry_wait_max,
            retry_after_max=retry_after_max,
        )
        # retry_limit=1: one provider attempt per call; the retries are ours (tenacity, Retry-After)
        super().__init__(method="GET", http_conn_id=metrika_conn_id, retry_limit=1)
        self.metrika_conn_id = metrika_conn_id
        self.max_parallel = max_parallel
        self.max_in_flight = max_parallel
        self._headers: dict[str, str] = {}

    async def _connect(self, conn: Any, extra: dict[str, Any]) -> str:
        """Read the OAuth token from the connection (called once, by ``config()``)."""
        token = _token(conn, self.metrika_conn_id)
        self._headers = {"Authorization": f"OAuth {token}"}
        return token

    def _what(self) -> str:
        return f"Metrika connection {self.metrika_conn_id!r}"

    def _authorize(self, req: Request) -> Request:
        """Add the ``Authorization: OAuth`` header."""
        req.headers = {**(req.headers or {}), **self._headers}
        return req

    async def get_calls_uploading(self, counter_id: int, uploading_id: int) -> dict:
        """One upload's record."""
        counter = _counter(counter_id)
        transport = await self._setup()
        what = f"Metrika counter {counter}, upload {uploading_id}"
        return await transport.request_json(
            self._authorize(
                Request(
                    "GET",
                    UPLOADING_PATH.format(counter_id=counter, uploading_id=int(uploading_id)),
                    what=what,
                    shape=lambda body: _uploading(body, what),
                )
            )
        )


__all__ = ["CLIENT_ID_TYPES", "MetrikaAsyncHook", "MetrikaHook"]
