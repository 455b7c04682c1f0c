"""Calltouch hooks: calls diary, requests journal, plans import.

Public surface (``docs/design.md``, "Hooks"): :class:`CalltouchHook` (sync, for operators) and
:class:`CalltouchAsyncHook` (for triggers). Operators pass snake_case parameters (``with_call_tags=True``,
``bind_to="session"``); :data:`CALLS_PARAMS` and :data:`REQUESTS_PARAMS` map them to the API's names.

Auth (api-notes §1, §2): the token is the connection's ``password``; it travels as the query parameter
``clientApiId`` for calls and requests, and as the ``Access-Token`` header (with ``SiteId``) for plans
import. The site id is the hook's ``site_id`` argument, else the connection extra ``site_id``.
The connection's ``host`` alone switches between the sandbox and production.

Rate limit: at most 5 request starts in any rolling ~1 s window per process and API host, paced evenly
and served first come first served (:func:`~calltouch_metrika.hooks._ratelimit.get_limiter`), shared by every
hook instance; for several workers, the operators also take a slot of the Airflow pool ``calltouch_api``.
Up to ``max_in_flight`` (10) requests are in flight, so slow answers do not leave the rate unused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import Any

from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook

from calltouch_metrika.constants import (  # re-exported from here (their former home)
    CALLS_PARAMS,
    CALLTOUCH_POOL,
    REQUESTS_PARAMS,
)
from calltouch_metrika.exceptions import (
    AuthenticationError,
    CalltouchMetrikaError,
    MalformedResponseError,
    NotFoundError,
    ValidationError,
)
from calltouch_metrika.hooks._errors import ApiSpec, QuotaAnswer, json_or_none
from calltouch_metrika.hooks._masking import Secrets, add_secret_query_param, snippet
from calltouch_metrika.hooks._mixins import (
    AsyncTransportHookMixin,
    TransportHookMixin,
    check_token,
    connection_token,
    transport_settings,
)
from calltouch_metrika.hooks._paging import fetch_days
from calltouch_metrika.hooks._ratelimit import get_limiter
from calltouch_metrika.hooks._transport import Request, Transport, base_url_from_connection, make_session
from calltouch_metrika.hooks.calltouch_params import days, map_params  # map_params re-exported

#: Calls and requests take the token as this query parameter (api-notes §1): scrubbed from every text.
TOKEN_QUERY_PARAM = "clientApiId"
add_secret_query_param(TOKEN_QUERY_PARAM)


#: Calls per page: the API's maximum.
PAGE_SIZE = 1000
#: Items per plans-import request (seed 001).
MAX_PLAN_ITEMS = 100

CALLS_PATH = "/calls-service/RestAPI/{site_id}/calls-diary/calls"
REQUESTS_PATH = "/calls-service/RestAPI/requests"
PLANS_ADD_PATH = "/report-service/RestAPI/api/plans-import/add"
PLANS_STATUS_PATH = "/report-service/RestAPI/api/plans-import/{import_log_id}/status"


def _count(value: Any, name: str, where: str) -> int | None:
    """A page counter of a calls answer as an int (``None`` when absent); a non-integer one is malformed.

    Accepted: a JSON integer, an integral float (``2.0``) or a string of ASCII digits. Refused (the page
    cannot be trusted): ``1.9``, ``true``, ``-1``, ``"2a"``.
    """
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 0:
        raise MalformedResponseError(f"{where}: {name} {value!r} is not a non-negative integer")
    return number


def _site_id(value: Any, source: str) -> int:
    try:
        site = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(
            f"Calltouch site id from {source} must be a positive integer, not {value!r}"
        ) from None
    if site <= 0:
        raise ValueError(f"Calltouch site id from {source} must be a positive integer, not {value!r}")
    return site


def _resolve_site_id(argument: Any, extra: Mapping[str, Any], conn_id: str) -> int:
    if argument not in (None, ""):
        return _site_id(argument, "the hook argument site_id")
    for key in ("site_id", "extra__calltouch__site_id"):  # plain, or as an older UI form stores it
        if extra.get(key) not in (None, ""):
            return _site_id(extra[key], f"connection {conn_id!r} extra {key}")
    raise ValueError(
        f"No Calltouch site id: pass site_id= to the hook or set the extra 'site_id' of connection {conn_id!r}"
    )


def _token(conn: Any, conn_id: str) -> str:
    return connection_token(conn, conn_id, kind="Calltouch API token")


# --------------------------------------------------------------------------------------------------
# Calltouch's error answers (given to the shared transport as CALLTOUCH)
# --------------------------------------------------------------------------------------------------


def is_points_exhausted(body: Any) -> bool:
    """The sandbox's (and our assumed production) shape for an exhausted daily points budget (api-notes §1)."""
    if not isinstance(body, dict):
        return False
    for candidate in (body, body.get("data")):
        if isinstance(candidate, dict) and str(candidate.get("type", "")).lower() == "pointslimitexceeded":
            return True
    return False


def calltouch_error(status: int, text: str, *, what: str, secrets: Secrets) -> CalltouchMetrikaError:
    """Translate a non-retryable Calltouch error answer (seed 001 bodies and plain ones) into a typed error.

    The error's ``status_code`` is ``status``.
    """
    body = json_or_none(text)
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
            f"API token (password) and that its user may access this site.",
            status_code=status,
        )
    if status == 404:
        api_message = (
            ((data or {}).get("apiErrorData") or {}).get("errorMessage") if isinstance(data, dict) else None
        )
        detail = api_message or message or snippet(text, secrets, 200)
        return NotFoundError(
            f"{what}: Calltouch answered 404 Not Found: {secrets.scrub(str(detail))}", status_code=status
        )
    if isinstance(data, dict) and data.get("type") == "validationError":
        raw = (data.get("validationErrorData") or {}).get("violations") or []
        violations = [
            (secrets.scrub(str(v.get("fieldPath", ""))), secrets.scrub(str(v.get("message", ""))))
            for v in raw
            if isinstance(v, dict)
        ]
        return ValidationError(
            f"{what}: Calltouch rejected the request (HTTP {status}, validation error):",
            violations,
            status_code=status,
        )
    if isinstance(data, dict) and data.get("type") == "apiError":
        api = data.get("apiErrorData") or {}
        detail = api.get("errorMessage") or "API error"
        extra = f" ({api['errorDescription']})" if api.get("errorDescription") else ""
        return ValidationError(
            f"{what}: Calltouch API error {api.get('errorCode', '?')} (HTTP {status}): {secrets.scrub(str(detail))}{extra}",
            status_code=status,
        )
    if message:
        return ValidationError(
            f"{what}: Calltouch rejected the request (HTTP {status}): {secrets.scrub(message)}",
            status_code=status,
        )
    return ValidationError(
        f"{what}: Calltouch rejected the request (HTTP {status}): {snippet(text, secrets)}",
        status_code=status,
    )


def read_429(text: str, secrets: Secrets) -> QuotaAnswer:
    """A Calltouch 429: the daily points budget (not retried: it resets daily) or the 5 requests/s limit."""
    if is_points_exhausted(json_or_none(text)):
        return QuotaAnswer(
            detail="pointsLimitExceeded",
            final=(
                f"the Calltouch daily API points budget is exhausted ({snippet(text, secrets, 200)}). "
                f"It resets daily; retry tomorrow or ask Calltouch for more points."
            ),
        )
    return QuotaAnswer(detail=snippet(text, secrets, 200) or "rate limited")


#: What the shared transport needs to know about Calltouch.
CALLTOUCH = ApiSpec(
    name="Calltouch",
    error_parser=calltouch_error,
    read_429=read_429,
    rate_hint="Lower the request rate (the `calltouch_api` pool, fewer parallel pipelines) or retry later.",
)


# --------------------------------------------------------------------------------------------------
# Sync hook
# --------------------------------------------------------------------------------------------------


class CalltouchHook(TransportHookMixin, HttpHook):
    """Talks to the Calltouch API: calls diary, requests journal, plans import.

    :param calltouch_conn_id: connection of type ``calltouch`` (or ``http``): host, password = API token,
        extra ``site_id``.
    :param site_id: the Calltouch site (ЛК) id; overrides the connection's extra ``site_id``.
    :param timeout: seconds to wait for each answer (connect and read).
    :param max_attempts: attempts per request for 429/5xx/connection errors/timeouts.
    :param requests_per_second: process-wide ceiling for this API host (Calltouch allows 5 per IP).
    :param max_in_flight: requests in flight at once when the page count is known. The limiter, not this
        cap, paces the starts (at most ``requests_per_second`` per rolling ``rate_window``), so this only has
        to be at least rate x response time for the pipeline to stay full: the default 10 saturates
        5 requests/s with answers of up to ~2 s (with 5 and 1.2 s answers it reached only ~4.2/s).
    :param rate_window: seconds in which ``requests_per_second`` starts are allowed (a little over 1 s, a
        safety margin against the server clocking requests later than we send them).
    :param retry_wait_min: first backoff (seconds); doubles per attempt, with jitter.
    :param retry_wait_max: longest backoff (seconds).
    :param retry_after_max: cap on a server's ``Retry-After``.
    :param plans_status_method: HTTP method of the plans-import status call (seed 001 says POST).
    """

    conn_name_attr = "calltouch_conn_id"
    default_conn_name = "calltouch_default"
    conn_type = "calltouch"
    hook_name = "Calltouch"

    def __init__(
        self,
        calltouch_conn_id: str = default_conn_name,
        *,
        site_id: int | str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        requests_per_second: float = 5.0,
        max_in_flight: int = 10,
        rate_window: float = 1.05,
        retry_wait_min: float = 1.0,
        retry_wait_max: float = 30.0,
        retry_after_max: float = 120.0,
        plans_status_method: str = "POST",
    ) -> None:
        super().__init__(method="GET", http_conn_id=calltouch_conn_id, tcp_keep_alive=False)
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
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
        self.calltouch_conn_id = calltouch_conn_id
        self._site_id_arg = site_id
        self.max_in_flight = max_in_flight
        self.rate_window = rate_window
        self.plans_status_method = plans_status_method.upper()
        self._site_id: int | None = None
        self._token: str | None = None

    # -- connection ---------------------------------------------------------------------------------

    def _setup(self) -> Transport:
        if self._transport is None:
            conn = self.get_connection(self.calltouch_conn_id)
            token = _token(conn, self.calltouch_conn_id)
            secrets = Secrets(token)  # registered with the masker before anything can quote it
            check_token(token, self.calltouch_conn_id, kind="Calltouch API token")
            self._site_id = _resolve_site_id(self._site_id_arg, conn.extra_dejson, self.calltouch_conn_id)
            self.base_url = base_url_from_connection(conn)
            self._base_url_initialized = True
            self._token = token
            self._transport = Transport(
                api=CALLTOUCH,
                base_url=self.base_url,
                session=make_session(self.max_in_flight),
                limiter=get_limiter(
                    "calltouch", self.base_url, self.requests_per_second, window=self.rate_window
                ),
                timeout=self.timeout,
                policy=self.policy,
                secrets=secrets,
                logger=self.log,
            )
        return self._transport

    @property
    def site_id(self) -> int:
        """The site id: the hook argument, else the connection extra ``site_id``."""
        self._setup()
        assert self._site_id is not None
        return self._site_id

    def _what(self) -> str:
        return f"Calltouch site {self._site_id}" if self._site_id else f"Calltouch ({self.calltouch_conn_id})"

    def _authorize(self, req: Request) -> Request:
        """Calls and requests take the token as the query parameter ``clientApiId``."""
        self._setup()
        req.params = {TOKEN_QUERY_PARAM: self._token, **(req.params or {})}
        return req

    def _get(self, path: str, params: dict[str, str], shape: Callable[[Any], Any] | None = None) -> Any:
        """GET ``path``; ``shape`` reads the JSON (its :class:`MalformedResponseError` is retried, see ``Request``)."""
        self._setup()
        return self._request(Request("GET", path, params=params, what=self._what(), shape=shape))

    # -- calls ----------------------------------------------------------------------------------------

    def get_calls(self, date_from: date, date_to: date, **params: Any) -> list[dict]:
        """Every call of ``date_from..date_to`` (inclusive, site's local days), every page of every day.

        The range is split into days; each day is fetched with ``page``/``limit=1000``. After a day's
        first page gives ``pageTotal``, the remaining pages go out concurrently (``max_in_flight``)
        through the process-wide limiter, and several days are in flight together, so extraction
        approaches 5 requests/s even with slow answers. Records come back in day order, then page order.

        :param params: snake_case flags and filters, see :data:`CALLS_PARAMS`.
        :raises TypeError: for an unknown parameter.
        """
        return [
            record
            for _, records in self.iter_calls_by_day(date_from, date_to, **params)
            for record in records
        ]

    def iter_calls_by_day(
        self, date_from: date, date_to: date, **params: Any
    ) -> Iterator[tuple[date, list[dict]]]:
        """Like :meth:`get_calls`, but yields ``(day, calls)`` per day, in day order, as each day completes.

        Days are fetched concurrently (a few days ahead of the consumer), so an operator can write one
        partition per day while the next days are already in flight; memory stays bounded by the lookahead.
        """
        api_params = map_params(params, CALLS_PARAMS, method="get_calls")
        the_days = days(date_from, date_to)
        path = CALLS_PATH.format(site_id=self.site_id)

        def fetch(day: date, page: int) -> tuple[list[dict], int, int | None]:
            query = {
                "dateFrom": day.strftime("%d/%m/%Y"),
                "dateTo": day.strftime("%d/%m/%Y"),
                "page": str(page),
                "limit": str(PAGE_SIZE),
                **api_params,
            }
            return self._get(path, query, shape=lambda body: self._parse_calls_page(body, day, page))

        for day, records, expected in self._pipeline(the_days, fetch):
            attempt = 1
            while expected is not None and expected != len(records):
                # A day whose pages do not add up to recordsTotal (an empty page, pages that moved while
                # we read them) is never handed on as complete: the whole day is read again, within the
                # retry policy, then the day fails (issue 13 §2/§4).
                problem = (
                    f"{self._what()}, calls of {day}: recordsTotal says {expected} calls but the pages "
                    f"held {len(records)}"
                )
                if attempt >= self.policy.max_attempts:
                    raise MalformedResponseError(
                        f"{problem}, after {attempt} reading(s) of the day; nothing of the day is used"
                    )
                delay = min(self.policy.wait_max, self.policy.wait_min * 2 ** (attempt - 1))
                self.log.warning(
                    "%s; reading the day again in %.1f s (attempt %d of %d)",
                    problem,
                    delay,
                    attempt + 1,
                    self.policy.max_attempts,
                )
                time.sleep(delay)
                records, expected = self._read_day(day, fetch)
                attempt += 1
            yield day, records

    @staticmethod
    def _read_day(
        day: date, fetch: Callable[[date, int], tuple[list[Any], int, int | None]]
    ) -> tuple[list[Any], int | None]:
        """Every page of ``day`` again, one after the other: ``(records, recordsTotal of page 1)``."""
        records, page_total, expected = fetch(day, 1)
        out = list(records)
        for page in range(2, page_total + 1):
            out.extend(fetch(day, page)[0])
        return out, expected

    def _pipeline(
        self, the_days: list[date], fetch: Callable[[date, int], tuple[list[dict], int, int | None]]
    ) -> Iterator[tuple[date, list[dict], int | None]]:
        """Every page of every day, ``max_in_flight`` at a time, days yielded in order (see :func:`fetch_days`)."""
        return fetch_days(the_days, fetch, max_in_flight=self.max_in_flight, thread_name_prefix="calltouch")

    def _parse_calls_page(self, body: Any, day: date, page: int) -> tuple[list[Any], int, int | None]:
        """One calls answer -> ``(items, pageTotal, recordsTotal)``; :class:`MalformedResponseError` if it is odd.

        Items are passed on as they came: one that is not a JSON object (``null``, ``"x"``, ``5``), in the
        envelope as in bare-array mode, becomes a ``malformed_record`` reject of the calls transform, never
        a silent drop. An answer that cannot be a page of this day is malformed (so retried, as a garbled
        answer, by the transport): ``pageTotal``/``recordsTotal``/``page`` that are not non-negative integers
        (``1.9``, ``true``, ``-1``), a ``page`` other than the one asked for, an empty page while
        ``pageTotal`` says there are several, a page past ``pageTotal``, more records than ``recordsTotal``.
        """
        where = f"{self._what()}, calls of {day}, page {page}"
        if isinstance(body, list):  # bare-array mode (no pagination): the whole day in one answer
            return list(body), 1, len(body)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise MalformedResponseError(
                f"{where}: expected an object with 'records', got {type(body).__name__}"
            )
        records = body["records"]
        page_total = _count(body.get("pageTotal"), "pageTotal", where)
        records_total = _count(body.get("recordsTotal"), "recordsTotal", where)
        answered = _count(body.get("page"), "page", where)
        if answered is not None and answered != page:
            raise MalformedResponseError(f"{where}: the answer is page {answered}, not page {page}")
        page_total = page_total or 0  # pageTotal 0 (or absent) means "no records": never loop on it
        if not records and page_total >= 2:
            raise MalformedResponseError(f"{where}: the page is empty but pageTotal is {page_total}")
        if page > 1 and page > page_total:
            raise MalformedResponseError(f"{where}: the page is past pageTotal {page_total}")
        if records_total is not None and len(records) > records_total:
            raise MalformedResponseError(
                f"{where}: the page holds {len(records)} records but recordsTotal is {records_total}"
            )
        return records, max(page_total, 1 if records else 0), records_total

    # -- requests journal ----------------------------------------------------------------------------

    def get_requests(self, date_from: date | None, date_to: date | None, **params: Any) -> list[dict]:
        """Every request (заявка) created ``date_from..date_to`` (inclusive), one API request per day.

        Dates go out as ``mm/dd/yyyy`` (seed 004; calls use ``dd/mm/yyyy``). The journal is not paginated.
        With ``request_id``/``request_number`` the dates may be ``None`` (one request, no dates).

        :param params: snake_case filters and flags, see :data:`REQUESTS_PARAMS`.
        :raises TypeError: for an unknown parameter.
        """
        if date_from is None and date_to is None:
            api_params = map_params(params, REQUESTS_PARAMS, method="get_requests")
            if not ({"requestId", "requestNumber"} & set(api_params)):
                raise ValueError(
                    "get_requests() needs date_from and date_to unless request_id/request_number is given"
                )
            query = {"siteId": str(self.site_id), **api_params}
            return self._get(REQUESTS_PATH, query, shape=lambda body: self._parse_requests(body, "by id"))
        return [r for _, records in self.iter_requests_by_day(date_from, date_to, **params) for r in records]

    def iter_requests_by_day(
        self, date_from: date | None, date_to: date | None, **params: Any
    ) -> Iterator[tuple[date, list[dict]]]:
        """Like :meth:`get_requests`, but yields ``(day, requests)`` per day, in order, days fetched concurrently."""
        api_params = map_params(params, REQUESTS_PARAMS, method="get_requests")
        the_days = days(date_from, date_to)
        base = {"siteId": str(self.site_id), **api_params}

        def fetch(day: date, page: int) -> tuple[list[Any], int, int | None]:
            query = {**base, "dateFrom": day.strftime("%m/%d/%Y"), "dateTo": day.strftime("%m/%d/%Y")}
            records = self._get(REQUESTS_PATH, query, shape=lambda body: self._parse_requests(body, str(day)))
            return records, 1, None

        for day, records, _ in self._pipeline(the_days, fetch):
            yield day, records

    def _parse_requests(self, body: Any, label: str) -> list[Any]:
        """The journal's array, every item as it came: one that is not an object becomes a
        ``malformed_record`` reject of :func:`~calltouch_metrika.transforms.requests.requests_to_table`."""
        if not isinstance(body, list):
            raise MalformedResponseError(
                f"{self._what()}, requests {label}: expected a JSON array, got {type(body).__name__}"
            )
        return list(body)

    # -- plans import -------------------------------------------------------------------------------

    def _plans_headers(self) -> dict[str, str]:
        self._setup()
        assert self._token is not None
        return {"Access-Token": self._token, "SiteId": str(self.site_id)}

    def plans_import_add(self, items: list[dict]) -> int:
        """Send up to 100 plan items (seed 001 format); return the ``importLogId``.

        Not idempotent: after a timeout or a lost answer it raises
        :class:`~calltouch_metrika.exceptions.OutcomeUnknownError` instead of sending again.
        """
        if not isinstance(items, list) or not items:
            raise ValueError("plans_import_add() needs a non-empty list of items")
        if len(items) > MAX_PLAN_ITEMS:
            raise ValueError(
                f"plans_import_add(): {len(items)} items; Calltouch accepts at most {MAX_PLAN_ITEMS} per request"
            )
        transport = self._setup()
        body = transport.request_json(
            Request(
                "POST",
                PLANS_ADD_PATH,
                headers=self._plans_headers(),
                json_body={"items": items},
                idempotent=False,
                what=self._what(),
            )
        )
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict) and data.get("importLogId") is not None:
            try:
                return int(data["importLogId"])
            except (TypeError, ValueError):
                pass
        if isinstance(data, dict) and data.get("type") in ("validationError", "apiError"):
            raise calltouch_error(400, _dumps(body), what=self._what(), secrets=transport.secrets)
        raise MalformedResponseError(f"{self._what()}: plans import answered without data.importLogId")

    def plans_import_status(self, import_log_id: int) -> dict:
        """The status response's ``data``: ``status`` (``success`` | ``in progress...`` | ``error``) and items."""
        transport = self._setup()
        body = transport.request_json(
            Request(
                self.plans_status_method,
                PLANS_STATUS_PATH.format(import_log_id=int(import_log_id)),
                headers=self._plans_headers(),
                what=self._what(),
            )
        )
        return _status_data(body, self._what(), import_log_id)

    # -- test button ----------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Ask for one call of today: proves host, token and site id (costs one API point)."""
        try:
            today = date.today()
            body = self._get(
                CALLS_PATH.format(site_id=self.site_id),
                {
                    "dateFrom": today.strftime("%d/%m/%Y"),
                    "dateTo": today.strftime("%d/%m/%Y"),
                    "page": "1",
                    "limit": "1",
                },
            )
            self._parse_calls_page(body, today, 1)
            return True, f"Calltouch site {self.site_id}: token accepted"
        except (CalltouchMetrikaError, ValueError) as exc:
            return False, str(exc)
        except Exception as exc:  # the Test button must answer, whatever happened
            return False, f"Calltouch connection test failed: {type(exc).__name__}"


def _dumps(body: Any) -> str:
    import json

    return json.dumps(body, ensure_ascii=False)


def _status_data(body: Any, what: str, import_log_id: int) -> dict:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or "status" not in data:
        if isinstance(data, dict) and data.get("type") in ("validationError", "apiError"):
            raise ValidationError(f"{what}: plans import {import_log_id}: {_dumps(data)[:300]}")
        raise MalformedResponseError(
            f"{what}: plans import {import_log_id} status answered without data.status"
        )
    return data


# --------------------------------------------------------------------------------------------------
# Async hook
# --------------------------------------------------------------------------------------------------


class CalltouchAsyncHook(AsyncTransportHookMixin, HttpAsyncHook):
    """Async counterpart of :class:`CalltouchHook` for triggers, built on the provider's ``HttpAsyncHook``.

    Requests go through ``HttpAsyncHook.session()`` / ``AsyncHttpSession.run`` (one attempt each,
    ``retry_limit=1``); :class:`~calltouch_metrika.hooks._mixins.AsyncTransportHookMixin` overrides what is
    wrong for us (connection extras as headers, no timeout, the provider's retries) and resolves the
    connection with the async API only (``get_async_connection``), never the sync ``get_connection``.
    Auth: the ``Access-Token`` and ``SiteId`` headers of the plans status call.
    """

    conn_name_attr = "calltouch_conn_id"
    default_conn_name = "calltouch_default"
    conn_type = "calltouch"
    hook_name = "Calltouch (async)"
    api = CALLTOUCH
    limiter_api = "calltouch"

    def __init__(
        self,
        calltouch_conn_id: str = default_conn_name,
        *,
        site_id: int | str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        requests_per_second: float = 5.0,
        retry_wait_min: float = 1.0,
        retry_wait_max: float = 30.0,
        retry_after_max: float = 120.0,
        plans_status_method: str = "POST",
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
        super().__init__(method=plans_status_method, http_conn_id=calltouch_conn_id, retry_limit=1)
        self.calltouch_conn_id = calltouch_conn_id
        self._site_id_arg = site_id
        self.plans_status_method = plans_status_method.upper()
        self._site_id: int | None = None
        self._token: str | None = None

    async def _connect(self, conn: Any, extra: dict[str, Any]) -> str:
        """Read token and site id from the connection (called once, by ``config()``)."""
        token = _token(conn, self.calltouch_conn_id)
        self._site_id = _resolve_site_id(self._site_id_arg, extra, self.calltouch_conn_id)
        self._token = token
        return token

    def _what(self) -> str:
        return f"Calltouch site {self._site_id}"

    def _authorize(self, req: Request) -> Request:
        """Add the header credentials of the plans API (``Access-Token``, ``SiteId``)."""
        req.headers = {**(req.headers or {}), "Access-Token": self._token or "", "SiteId": str(self._site_id)}
        return req

    async def plans_import_status(self, import_log_id: int) -> dict:
        """The status response's ``data`` (``status`` and the items)."""
        transport = await self._setup()
        what = self._what()
        body = await transport.request_json(
            self._authorize(
                Request(
                    self.plans_status_method,
                    PLANS_STATUS_PATH.format(import_log_id=int(import_log_id)),
                    what=what,
                )
            )
        )
        return _status_data(body, what, import_log_id)


__all__ = [
    "CALLS_PARAMS",
    "CALLTOUCH_POOL",
    "REQUESTS_PARAMS",
    "CalltouchAsyncHook",
    "CalltouchHook",
    "map_params",
]
