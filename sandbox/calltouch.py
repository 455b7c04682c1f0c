"""Calltouch endpoints: calls diary, requests (leads) journal, plans import.

Paths, parameters and bodies follow ../shared/api-notes.md §1-2 and seeds 001 and 004. Where the
real error body is undocumented (calls-service errors) the sandbox answers ``{"message": "..."}``
with 400 (bad parameter) or 403 (bad token / foreign site); the README's sandbox section says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sandbox.errors import (
    JSONUtf8Response,
    calltouch_message,
    injected_error,
    plans_api_error,
    plans_missing_field,
    plans_violations,
)
from sandbox.generators import (
    REQUEST_ATTRIBUTE_CYCLE,
    attribute_hits,
    attribute_offset,
    attribute_prefix,
    call_blocks,
    callback_info,
    generate_calls,
    generate_requests,
    request_attribute_fields,
    request_attributes,
    request_offset,
    window_count,
    window_positions,
)
from sandbox.params import parse_id
from sandbox.render import Projection
from sandbox.state import PlansImport, SandboxState

router = APIRouter(dependencies=[Depends(injected_error)])

# ASCII digits only: ``\d`` would also take Arabic-Indic and other Unicode digits (and ``str.isdigit`` takes "²",
# which ``int`` refuses).
_DDMMYYYY = re.compile(r"^([0-9]{2})/([0-9]{2})/([0-9]{4})$")
_HHMMSS = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})$")
_PLAN_DATE = re.compile(r"^([0-9]{2})-([0-9]{2})-([0-9]{4})$")
#: The dates the calls diary and the requests journal accept (sandbox/README.md, "Dates"): from the unix epoch
#: (calls carry unix ``timestamp``s) to the last date whose next days (the day after ``dateTo``, plus 4 for
#: ``bindTo=session``) are still dates. Outside: 400, like any other bad date.
DATE_MIN = date(1970, 1, 1)
DATE_MAX = date(9998, 12, 31)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_SESSION_LOOKAHEAD_DAYS = 4  # a session starts less than 3 days + 1 hour before its call or request
#: From this day of a ``bindTo=session`` range on (up to ``dateTo``), every call's session lies in the range: such
#: a day selects exactly its calls that have a session (4 days - 1 DST hour > 3 days + 1800 s, with a day to spare).
_SESSION_INNER_DAYS = _SESSION_LOOKAHEAD_DAYS + 1

CALL_BLOCK_FLAGS = {
    "withCallTags": "callTags",
    "withComments": "comments",
    "withOrders": "orders",
    "withMapVisits": "mapVisits",
    "withYandexDirect": "yandexDirect",
    "withGoogleAdwords": "googleAdWords",
}
CALL_FILTERS = {
    "uniqueOnly": "uniqueCall",
    "targetOnly": "targetCall",
    "uniqTargetOnly": "uniqTargetCall",
    "callbackOnly": "callbackCall",
}
#: Source fields the calls diary filters on: ``<field>=<value>`` (exact; SeeTheSun1 sends ``utmMedium=cpc``)
#: and ``<field>.value`` with ``<field>.filterMode`` startwith|contains|exact (api-notes §1.3, [?]).
CALL_SOURCE_FILTERS = ("source", "medium", "utmSource", "utmMedium", "utmCampaign", "utmContent", "utmTerm")
_DIRECT_OVERRIDE = {
    "source": "(direct)",
    "medium": "(none)",
    "keyword": "",
    "utmSource": "<не указано>",
    "utmMedium": "<не указано>",
    "utmCampaign": "<не указано>",
    "utmContent": "<не указано>",
    "utmTerm": "<не указано>",
}


class ParamError(Exception):
    """A bad query parameter (answered 400 ``{"message": ...}``)."""


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def _json(doc: Any) -> Response:
    return JSONUtf8Response(doc)


def _flag(params: Any, name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ParamError(f"Параметр {name} должен быть true или false")


def _int_param(params: Any, name: str, lo: int, hi: int) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(f"Параметр {name} должен быть целым числом") from None
    if not lo <= value <= hi:
        raise ParamError(f"Параметр {name} должен быть в диапазоне {lo}..{hi}")
    return value


def _date(params: Any, name: str, order: str) -> date:
    raw = params.get(name)
    if raw is None or raw == "":
        raise ParamError(f"Не указан обязательный параметр {name}")
    m = _DDMMYYYY.match(raw)
    fmt = "dd/mm/yyyy" if order == "dmy" else "mm/dd/yyyy"
    if not m:
        raise ParamError(f"Параметр {name} должен быть датой в формате {fmt}")
    a, b, y = (int(g) for g in m.groups())
    d, mo = (a, b) if order == "dmy" else (b, a)
    try:
        value = date(y, mo, d)
    except ValueError:
        raise ParamError(f"Параметр {name} должен быть датой в формате {fmt}") from None
    if not DATE_MIN <= value <= DATE_MAX:
        lo, hi = (f"{x.day:02}/{x.month:02}/{x.year}" for x in (DATE_MIN, DATE_MAX))
        if order == "mdy":
            lo, hi = (f"{x.month:02}/{x.day:02}/{x.year}" for x in (DATE_MIN, DATE_MAX))
        raise ParamError(f"Параметр {name} вне допустимого диапазона дат: {lo} - {hi}")
    return value


def _sites(st: SandboxState, token: str | None) -> list[int] | None:
    if not token:
        return None
    return st.config.calltouch_tokens.get(token)


def _forbidden() -> Response:
    return calltouch_message(403, "Доступ запрещён: неверный clientApiId или нет доступа к сайту")


def _days(a: date, b: date) -> list[date]:
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


def _local_today(st: SandboxState) -> tuple[date, int]:
    now = st.config.clock()
    return now.astimezone(ZoneInfo(st.config.site_timezone)).date(), int(now.timestamp())


def _midnight(day: date, tz: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


# --------------------------------------------------------------------------------------------- calls


@dataclass(frozen=True)
class CallSelection:
    """Which calls a calls-diary request selects (besides the dates): binding and filters.

    ``flags``: boolean fields that must be true (``uniqueOnly`` …); ``matches``: ``(field, wanted, mode)``
    source filters, compared with the value as sent (``attribution=0`` may turn a call into ``(direct)``).
    """

    bind_to: str = "call"
    flags: tuple[str, ...] = ()
    matches: tuple[tuple[str, str, str], ...] = ()
    attribution: int | None = None

    @property
    def filtered(self) -> bool:
        """Whether any filter applies (else every call of a call-bound past day is selected)."""
        return bool(self.flags or self.matches)

    def keep(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` passes the filters."""
        if not all(record[f] for f in self.flags):
            return False
        for name, wanted, mode in self.matches:
            value = record[name]
            if self.attribution == 0 and record["_direct0"] and name in _DIRECT_OVERRIDE:
                value = _DIRECT_OVERRIDE[name]
            if not _match(value, wanted, mode):
                return False
        return True


def select_calls(
    st: SandboxState,
    site_id: int,
    date_from: date,
    date_to: date,
    bind_to: str,
    filters: list[str],
    matches: tuple[tuple[str, str, str], ...] = (),
    attribution: int | None = None,
) -> list[dict[str, Any]]:
    """Base records of the range (calls up to "now"), bound by call or session date, filtered.

    The plain reference path (tests compare the served bytes with it); the endpoint pages through
    :func:`page_rendered` instead.
    """
    cfg = st.config
    tz = ZoneInfo(cfg.site_timezone)
    today, now_ts = _local_today(st)
    last = date_to + timedelta(days=_SESSION_LOOKAHEAD_DAYS) if bind_to == "session" else date_to
    last = min(last, today)
    out: list[dict[str, Any]] = []
    seed = str(cfg.seed)
    for day in _days(date_from, last) if date_from <= last else []:
        records = st.calls_cache.get(
            seed, site_id, day, cfg.volume(site_id, day.isoformat()), cfg.site_timezone
        )
        if day == today:
            records = [r for r in records if r["timestamp"] <= now_ts]
        out.extend(records)
    if bind_to == "session":
        lo, hi = _midnight(date_from, tz), _midnight(date_to + timedelta(days=1), tz)
        out = [r for r in out if r["_session_ts"] is not None and lo <= r["_session_ts"] < hi]
    selection = CallSelection(bind_to, tuple(filters), matches, attribution)
    return [r for r in out if selection.keep(r)]


def project_call(
    seed: str,
    record: dict[str, Any],
    attribution: int | None,
    blocks: list[str],
    extra: dict[str, Any],
    tz_name: str,
) -> dict[str, Any]:
    """The call as sent: private keys dropped, attribution applied, requested blocks added."""
    out = {k: v for k, v in record.items() if k[0] != "_"}
    if attribution is not None:
        out["attribution"] = attribution
        if attribution == 0 and record["_direct0"]:
            out.update(_DIRECT_OVERRIDE)
    if blocks:
        generated = call_blocks(seed, record, tz_name)
        for name in blocks:
            out[name] = generated[name]
    out.update(extra)
    if "callbackInfo" in extra and record["callbackCall"]:
        out["callbackInfo"] = callback_info(seed, record)
    return out


@router.get("/calls-service/RestAPI/{site_id}/calls-diary/calls")
async def calls_diary(site_id: str, request: Request) -> Response:
    """The calls diary: bare array for one day, or the paginated envelope with page/limit."""
    st = _state(request)
    params = request.query_params
    sites = _sites(st, params.get("clientApiId"))
    site = parse_id(site_id)
    if sites is None or site is None or site not in sites:
        return _forbidden()
    try:
        date_from = _date(params, "dateFrom", "dmy")
        date_to = _date(params, "dateTo", "dmy")
        if date_from > date_to:
            raise ParamError("Дата dateFrom должна быть меньше или равна dateTo")
        page = _int_param(params, "page", 1, 10**9)
        limit = _int_param(params, "limit", 1, 1000)
        paginated = page is not None or limit is not None
        if not paginated and date_from != date_to:
            raise ParamError(
                "Без параметров page и limit можно выгрузить только один день: dateFrom должна быть равна dateTo"
            )
        attribution = _int_param(params, "attribution", 0, 1)
        bind_to = params.get("bindTo", "call")
        if bind_to not in ("call", "session"):
            raise ParamError("Параметр bindTo должен быть call или session")
        filters = [field for name, field in CALL_FILTERS.items() if _flag(params, name)]
        matches = _source_filters(params)
        blocks = tuple(block for name, block in CALL_BLOCK_FLAGS.items() if _flag(params, name))
        extra: list[str] = []
        if _flag(params, "withText"):
            extra += ["phrases", "phonesInText"]
        if _flag(params, "withDcm"):
            extra.append("dcm")
        if _flag(params, "withCallbackInfo"):
            extra.append("callbackInfo")
    except ParamError as exc:
        return calltouch_message(400, str(exc))
    projection = Projection(attribution, blocks, tuple(extra))
    selection = CallSelection(bind_to, tuple(filters), matches, attribution)
    if not paginated:
        rendered = await select_rendered(st, site, date_from, date_to, selection, projection)
        return _raw_json(b"[" + b",".join(rendered) + b"]")
    page = page or 1
    limit = limit or 1000
    total, chunk = await page_rendered(
        st, site, date_from, date_to, selection, projection, (page - 1) * limit, limit
    )
    head = f'{{"page":{page},"pageTotal":{(total + limit - 1) // limit},"pageSize":{limit},'
    head += f'"recordsTotal":{total},"records":['
    return _raw_json(head.encode() + b",".join(chunk) + b"]}")


def _raw_json(body: bytes) -> Response:
    """Already-serialised JSON, with the same content type as :class:`JSONUtf8Response`."""
    return Response(body, media_type=JSONUtf8Response.media_type)


def _source_filters(params: Any) -> tuple[tuple[str, str, str], ...]:
    """The source filters of a calls-diary query: ``utmMedium=cpc`` and ``<field>.value``/``.filterMode``.

    A ``<name>.value`` for a field the sandbox does not filter on is a 400, not silently ignored.
    """
    out: list[tuple[str, str, str]] = []
    for name in CALL_SOURCE_FILTERS:
        if params.get(name) is not None:
            out.append((name, params[name], "exact"))
    for key in params:
        name, dot, suffix = key.rpartition(".")
        if not dot or suffix not in ("value", "filterMode"):
            continue
        if name not in CALL_SOURCE_FILTERS:
            raise ParamError(
                f"Неизвестный фильтр {key}: поддерживаются {', '.join(CALL_SOURCE_FILTERS)} (.value, .filterMode)"
            )
        mode = params.get(f"{name}.filterMode", "exact")
        if mode not in _FILTER_MODES:
            raise ParamError(f"Параметр {name}.filterMode должен быть одним из: startwith, contains, exact")
        if suffix == "value":
            out.append((name, params[key], mode))
    return tuple(out)


@dataclass(frozen=True)
class _Range:
    """What every day of one calls-diary request shares: the clock and the session-binding bounds."""

    site_id: int
    today: date
    now_ts: int
    lo: int
    hi: int
    days: tuple[date, ...]
    date_from: date
    date_to: date

    def arithmetic(self, day: date, bind_to: str) -> bool:
        """Whether ``day``'s selected calls are counted from the attribute cycle, without generating the day.

        True for a past day bound by call date, and for a past day of a session-bound range from its 6th day
        to ``dateTo``; false for today (the count follows the clock), for the first days of a session-bound
        range (some sessions start before it) and for the days after ``dateTo`` it looks at (some sessions
        start inside it).
        """
        if day == self.today:
            return False
        return (
            bind_to == "call" or self.date_from + timedelta(days=_SESSION_INNER_DAYS) <= day <= self.date_to
        )


def _range(st: SandboxState, site_id: int, date_from: date, date_to: date, bind_to: str) -> _Range:
    tz = ZoneInfo(st.config.site_timezone)
    today, now_ts = _local_today(st)
    last = date_to + timedelta(days=_SESSION_LOOKAHEAD_DAYS) if bind_to == "session" else date_to
    last = min(last, today)
    days = tuple(_days(date_from, last)) if date_from <= last else ()
    lo, hi = _midnight(date_from, tz), _midnight(date_to + timedelta(days=1), tz)
    return _Range(site_id, today, now_ts, lo, hi, days, date_from, date_to)


def _day_key(st: SandboxState, site_id: int, day: date) -> tuple[str, int, date, int, str]:
    cfg = st.config
    return (str(cfg.seed), site_id, day, cfg.volume(site_id, day.isoformat()), cfg.site_timezone)


def _selected(records: list[dict[str, Any]], rng: _Range, day: date, selection: CallSelection) -> list[int]:
    """Indexes of the day's records the request selects (calls up to "now", binding, filters)."""
    partial = day == rng.today
    session = selection.bind_to == "session"
    return [
        i
        for i, r in enumerate(records)
        if not (partial and r["timestamp"] > rng.now_ts)
        and not (session and (r["_session_ts"] is None or not rng.lo <= r["_session_ts"] < rng.hi))
        and selection.keep(r)
    ]


async def _day_records(st: SandboxState, key: tuple[str, int, date, int, str]) -> list[dict[str, Any]]:
    """A day's base records: from the cache, else generated in a worker thread (the loop keeps serving)."""
    records = st.calls_cache.peek(key)
    if records is None:
        records = await asyncio.to_thread(generate_calls, *key)
        st.calls_cache.generated += 1
        st.calls_cache.put(key, records)
    return records


@lru_cache(maxsize=32)
def _selection_prefix(seed: str, site_id: int, selection: CallSelection) -> Sequence[int]:
    """Prefix sums over the site's attribute cycle of the calls ``selection`` keeps (session binding: with a session)."""
    session = selection.bind_to == "session"
    return attribute_prefix(seed, site_id, lambda f: (f["_session"] or not session) and selection.keep(f))


async def _day_count(
    st: SandboxState, rng: _Range, day: date, selection: CallSelection, prefix: Sequence[int] | None
) -> int:
    """How many calls of ``day`` the request selects, without rendering anything.

    Arithmetic when :meth:`_Range.arithmetic` says so (nothing generated): a call-bound day without filters
    holds exactly its volume; otherwise the count is a window of ``prefix`` (:func:`_selection_prefix`), since
    every attribute a filter reads comes from the site's attribute cycle (sandbox.generators). Else (today, the
    edges of a session-bound range) the day is generated and its count kept (a small int per day, selection and
    binding bounds: pure, so it survives resets); today's count follows the clock and is never kept.
    """
    key = _day_key(st, rng.site_id, day)
    if rng.arithmetic(day, selection.bind_to):
        if prefix is None:
            return key[3]
        return window_count(prefix, attribute_offset(key[0], rng.site_id, day), key[3])
    bounds = (rng.lo, rng.hi) if selection.bind_to == "session" else None
    count_key = (key, selection, bounds)
    if day != rng.today:
        hit = st.day_counts.get(count_key)
        if hit is not None:
            return hit
    count = len(_selected(await _day_records(st, key), rng, day, selection))
    if day != rng.today:
        st.remember_day_count(count_key, count)
    return count


async def _day_rendered(
    st: SandboxState, rng: _Range, day: date, selection: CallSelection, projection: Projection
) -> list[bytes]:
    """The day's selected calls, each already rendered for ``projection`` (sandbox/render.py)."""
    records, rendered = await st.rendered_calls.get(_day_key(st, rng.site_id, day), projection)
    if day != rng.today and selection.bind_to == "call" and not selection.filtered:
        return rendered  # the cached list itself (never mutated)
    return [rendered[i] for i in _selected(records, rng, day, selection)]


async def select_rendered(
    st: SandboxState,
    site_id: int,
    date_from: date,
    date_to: date,
    selection: CallSelection,
    projection: Projection,
) -> list[bytes]:
    """:func:`select_calls`, but each selected call already rendered as JSON bytes for ``projection``."""
    rng = _range(st, site_id, date_from, date_to, selection.bind_to)
    out: list[bytes] = []
    for day in rng.days:
        rendered = await _day_rendered(st, rng, day, selection, projection)
        if len(rng.days) == 1:
            return rendered
        out.extend(rendered)
    return out


async def page_rendered(
    st: SandboxState,
    site_id: int,
    date_from: date,
    date_to: date,
    selection: CallSelection,
    projection: Projection,
    offset: int,
    limit: int,
) -> tuple[int, list[bytes]]:
    """``(recordsTotal, the page's rendered calls)``: only the days the page touches are rendered.

    Each day's count is cheap (:func:`_day_count`), so a page of a 698-day range costs about what a page
    of one day costs, instead of rendering every day of the range for every page.
    """
    rng = _range(st, site_id, date_from, date_to, selection.bind_to)
    prefix = None
    if selection.filtered or selection.bind_to == "session":
        seed = str(st.config.seed)
        prefix = await asyncio.to_thread(_selection_prefix, seed, site_id, selection)
    counts = [await _day_count(st, rng, day, selection, prefix) for day in rng.days]
    out: list[bytes] = []
    pos = 0
    end = offset + limit
    for day, count in zip(rng.days, counts, strict=True):
        if count and pos < end and pos + count > offset:
            rendered = await _day_rendered(st, rng, day, selection, projection)
            out.extend(rendered[max(0, offset - pos) : end - pos])
        pos += count
    return pos, out


# --------------------------------------------------------------------------------------------- requests

REQUEST_FLAG_BLOCKS = {
    "withMapVisits": "mapVisits",
    "withRequestTags": "RequestTags",
    "withYandexDirect": "yandexDirect",
    "withGoogleAdwords": "googleAdWords",
    "withCustomFields": "customFields",
}
_FILTER_MODES = ("exact", "startwith", "contains")


def _match(value: str | None, wanted: str, mode: str) -> bool:
    if value is None:
        return False
    if mode == "startwith":
        return value.startswith(wanted)
    if mode == "contains":
        return wanted in value
    return value == wanted


def _id_list(raw: str | None, name: str, numeric: bool) -> list[str] | None:
    if raw is None:
        return None
    items = [x.strip() for x in raw.split(",") if x.strip()]
    if not items or (numeric and not all(parse_id(x) is not None for x in items)):
        raise ParamError(f"Параметр {name} должен быть списком {'чисел ' if numeric else ''}через запятую")
    return items


def _request_days(ids: list[str]) -> set[date]:
    """The days the generated ids/numbers in ``ids`` belong to (a generated id is ``day ordinal * 100000 + n``)."""
    days = set()
    for raw in ids:
        digits = re.sub(r"[^0-9]", "", raw)
        if 0 < len(digits) <= 18 and DATE_MIN.toordinal() <= int(digits) // 100_000 <= DATE_MAX.toordinal():
            days.add(date.fromordinal(int(digits) // 100_000))
    return days


def project_request(record: dict[str, Any], params: Any, attribution: int | None) -> dict[str, Any]:
    """A request record as sent for the given ``with*`` flags (seed 004 semantics)."""
    flags = {
        name: _flag(params, name) for name in (*REQUEST_FLAG_BLOCKS, "withAttrs", "withWidgetInfo", "withDcm")
    }
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key[0] == "_":
            continue
        if key in ("mapVisits", "RequestTags", "yandexDirect", "googleAdWords", "customFields"):
            flag = next(n for n, b in REQUEST_FLAG_BLOCKS.items() if b == key)
            if flags[flag]:
                out[key] = value
            continue
        if key == "widgetInfo":
            if flags["withWidgetInfo"] and record["_widget"]:
                out[key] = value
            continue
        if key == "dcm":
            out[key] = value if flags["withDcm"] else None
            continue
        out[key] = value

    def fix_session(session: dict[str, Any]) -> dict[str, Any]:
        session = dict(session)
        if not flags["withAttrs"]:
            session["attrs"] = None
        if attribution is not None:
            session["attribution"] = attribution
        return session

    if out["session"] is not None:
        out["session"] = fix_session(out["session"])
    out["orders"] = [
        {**o, "session": fix_session(o["session"])} if o.get("session") else o for o in out["orders"]
    ]
    return out


@dataclass(frozen=True)
class RequestPrefilter:
    """The journal's filters on a request's own attributes (``subject``, ``keywords``, ``city``, ``source``,
    ``medium``, ``manager``): the site's request attribute cycle tells which requests pass them, so only those
    are generated (sandbox.generators.request_attributes). The journal still applies every filter to them.
    """

    subject: str | None = None
    keywords: str | None = None
    session_fields: tuple[tuple[str, str], ...] = ()
    manager: str | None = None

    def keep(self, fields: dict[str, Any]) -> bool:
        """Whether a request with these fields (a record or :func:`request_attribute_fields`) passes."""
        session = fields["session"]
        if self.subject is not None and not (fields["subject"] or "").startswith(self.subject):
            return False
        if self.keywords is not None and not (session and self.keywords in (session["keywords"] or "")):
            return False
        if any(not session or session[name] != value for name, value in self.session_fields):
            return False
        return self.manager is None or fields["manager"] == self.manager


def _request_prefilter(params: Any) -> RequestPrefilter | None:
    """The query's filters on the requests' own attributes, or None when it has none."""
    found = RequestPrefilter(
        subject=params.get("subject"),
        keywords=params.get("keywords"),
        session_fields=tuple(
            (n, params[n]) for n in ("city", "source", "medium") if params.get(n) is not None
        ),
        manager=params.get("manager"),
    )
    return None if found == RequestPrefilter() else found


@lru_cache(maxsize=32)
def _request_hits(seed: str, site_id: int, keep: RequestPrefilter) -> list[int]:
    """Positions of the site's request attribute cycle whose requests pass ``keep`` (~10 ms once)."""
    return attribute_hits(request_attributes(seed, site_id), request_attribute_fields, keep.keep)


@router.get("/calls-service/RestAPI/requests")
@router.get("/calls-service/RestAPI/requests/")
async def requests_journal(request: Request) -> Response:
    """The requests (leads) journal: bare array, dates ``mm/dd/yyyy``, every seed-004 filter."""
    st = _state(request)
    params = request.query_params
    sites = _sites(st, params.get("clientApiId"))
    if sites is None:
        return _forbidden()
    raw_site = params.get("siteId")
    if raw_site is not None:
        site = parse_id(raw_site)
        if site is None or site not in sites:
            return _forbidden()
        sites = [site]
    cfg = st.config
    tz = ZoneInfo(cfg.site_timezone)
    try:
        ids = _id_list(params.get("requestId"), "requestId", numeric=True)
        numbers = _id_list(params.get("requestNumber"), "requestNumber", numeric=False)
        has_dates = params.get("dateFrom") is not None or params.get("dateTo") is not None
        if has_dates or not (ids or numbers):
            date_from = _date(params, "dateFrom", "mdy")
            date_to = _date(params, "dateTo", "mdy")
            if date_from > date_to:
                raise ParamError("Дата dateFrom должна быть меньше или равна dateTo")
        else:
            date_from = date_to = None
        times = []
        for name, default in (("timeFrom", "00:00:00"), ("timeTo", "23:59:59")):
            raw = params.get(name, default)
            m = _HHMMSS.match(raw)
            if not m or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3]) > 59:
                raise ParamError(f"Параметр {name} должен быть временем в формате hh:mm:ss")
            times.append(int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]))
        attribution = _int_param(params, "attribution", 0, 1)
        bind_to = params.get("bindTo", "request")
        if bind_to not in ("request", "session"):
            raise ParamError("Параметр bindTo должен быть request или session")
        modes = {}
        for name in ("ani", "email"):
            mode = params.get(f"{name}.filterMode", "exact")
            if mode not in _FILTER_MODES:
                raise ParamError(
                    f"Параметр {name}.filterMode должен быть одним из: startwith, contains, exact"
                )
            modes[name] = mode
        for name in (*REQUEST_FLAG_BLOCKS, "withAttrs", "withWidgetInfo", "withDcm"):
            _flag(params, name)
    except ParamError as exc:
        return calltouch_message(400, str(exc))

    today, now_ts = _local_today(st)
    if date_from is not None and date_to is not None:
        last = date_to + timedelta(days=_SESSION_LOOKAHEAD_DAYS) if bind_to == "session" else date_to
        days = _days(date_from, min(last, today)) if date_from <= min(last, today) else []
        lo = _midnight(date_from, tz) + times[0]
        hi = _midnight(date_to, tz) + times[1]
    else:
        days = sorted(d for d in _request_days((ids or []) + (numbers or [])) if d <= today)
        lo, hi = None, None

    # generated, filtered, projected and serialised in a worker thread: a long range takes seconds, and the
    # event loop keeps serving (and clocking the rate limit of) other requests meanwhile
    def answer() -> Response:
        records: list[dict[str, Any]] = []
        seed, volume = str(cfg.seed), cfg.requests_per_day
        keep = _request_prefilter(params)
        for site in sites:
            hits = None if keep is None else _request_hits(seed, site, keep)
            for day in days:
                only = None
                if hits is not None:
                    only = window_positions(
                        hits, request_offset(seed, site, day), volume, REQUEST_ATTRIBUTE_CYCLE
                    )
                    if not only:
                        continue
                generated = generate_requests(seed, site, day, volume, cfg.site_timezone, only=only)
                st.requests_generated += len(generated)
                for r in generated:
                    if r["_ts"] > now_ts:
                        continue
                    key_ts = r["_session_ts"] if bind_to == "session" else r["_ts"]
                    if lo is not None and (key_ts is None or not lo <= key_ts <= hi):
                        continue
                    records.append(r)
        if ids is not None:
            wanted = {int(x) for x in ids}
            records = [r for r in records if r["requestId"] in wanted]
        if numbers is not None:
            records = [r for r in records if r["requestNumber"] in set(numbers)]
        p = params
        if p.get("subject") is not None:
            records = [r for r in records if (r["subject"] or "").startswith(p["subject"])]
        if p.get("keywords") is not None:
            records = [
                r for r in records if r["session"] and p["keywords"] in (r["session"]["keywords"] or "")
            ]
        for name in ("city", "source", "medium"):
            if p.get(name) is not None:
                records = [r for r in records if r["session"] and r["session"][name] == p[name]]
        if p.get("manager") is not None:
            records = [r for r in records if r["manager"] == p["manager"]]
        if p.get("ani.value") is not None:
            records = [
                r
                for r in records
                if any(
                    _match(ph["phoneNumber"], p["ani.value"], modes["ani"]) for ph in r["client"]["phones"]
                )
            ]
        if p.get("email.value") is not None:
            records = [
                r
                for r in records
                if any(
                    _match(c["contactValue"], p["email.value"], modes["email"])
                    for c in r["client"]["contacts"]
                )
            ]
        return _json([project_request(r, params, attribution) for r in records])

    return await asyncio.to_thread(answer)


# --------------------------------------------------------------------------------------------- plans


def _plans_auth(st: SandboxState, request: Request) -> tuple[int | None, Response | None]:
    token = request.headers.get("Access-Token")
    sites = st.config.calltouch_tokens.get(token) if token else None
    if sites is None:
        return None, JSONUtf8Response({"message": "Access token не найден"}, status_code=401)
    raw_site = (request.headers.get("SiteId") or "").strip()
    site = parse_id(raw_site)
    if site is None or site not in sites:
        return None, JSONUtf8Response({"message": "Access token не найден"}, status_code=403)
    return site, None


_REQUIRED_ITEM_FIELDS = ("dateFrom", "dateTo", "metric")
_REQUIRED_METRIC_FIELDS = ("type", "name", "value")
_EMPTY = "Значение не должно быть пустым."
_NOT_ALLOWED = "Значение не совпадает с одним из допустимых."
_NOT_UNIQUE = "Название пользовательского столбца не уникально, импорт невозможен."
_BAD_DATE = "Значение не является правильной датой."
_DIMENSIONS = ("source", "medium", "campaign", "content", "keyword")


def _plan_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    m = _PLAN_DATE.match(value)
    if not m:
        return None
    try:
        return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None


def validate_plans(body: Any) -> Response | None:
    """Seed 001's validation: a response with the exact error body, or None when the body is valid."""
    from calltouch_metrika.catalog import CALLTOUCH_METRIC_NAMES, METRIC_TYPES

    if not isinstance(body, dict) or "items" not in body:
        return plans_missing_field("items")
    items = body["items"]
    if not isinstance(items, list):
        return plans_violations([{"fieldPath": "items", "message": "Значение должно быть типа array."}])
    if not items:
        return plans_violations(
            [{"fieldPath": "items", "message": "Эта коллекция должна содержать 1 элемент или больше."}]
        )
    if len(items) > 100:
        return plans_violations(
            [{"fieldPath": "items", "message": "Эта коллекция должна содержать 100 элементов или меньше."}]
        )
    for item in items:
        if not isinstance(item, dict):
            continue
        for name in _REQUIRED_ITEM_FIELDS:
            if name not in item:
                return plans_missing_field(name)
        if isinstance(item["metric"], dict):
            for name in _REQUIRED_METRIC_FIELDS:
                if name not in item["metric"]:
                    return plans_missing_field(name)
    violations: list[dict[str, str]] = []

    def add(path: str, message: str) -> None:
        violations.append({"fieldPath": path, "message": message})

    for i, item in enumerate(items):
        at = f"items[{i}]"
        if not isinstance(item, dict):
            add(at, "Значение должно быть типа object.")
            continue
        if not any(isinstance(item.get(d), str) and item[d].strip() for d in _DIMENSIONS):
            add(
                f"{at}.source", "Должно быть заполнено одно или несколько из полей: " + ", ".join(_DIMENSIONS)
            )
        parsed = {}
        for name in ("dateFrom", "dateTo"):
            value = item[name]
            if value is None or value == "":
                add(f"{at}.{name}", _EMPTY)
            elif (parsed_value := _plan_date(value)) is None:
                add(f"{at}.{name}", _BAD_DATE)
            else:
                parsed[name] = parsed_value
        if len(parsed) == 2 and parsed["dateFrom"] > parsed["dateTo"]:
            add(f"{at}.dateFrom", "Значение dateFrom должно быть меньше или равно dateTo")
        metric = item["metric"]
        if not isinstance(metric, dict):
            add(f"{at}.metric", "Значение должно быть типа object.")
            continue
        mtype, mname, mvalue = metric["type"], metric["name"], metric["value"]
        type_ok = False
        if mtype is None or mtype == "":
            add(f"{at}.metric.type", _EMPTY)
        elif not isinstance(mtype, str) or mtype not in METRIC_TYPES:
            add(f"{at}.metric.type", _NOT_ALLOWED)
        else:
            type_ok = True
        if mname is None or (isinstance(mname, str) and not mname.strip()):
            add(f"{at}.metric.name", _EMPTY)
        elif not isinstance(mname, str):
            add(f"{at}.metric.name", "Значение должно быть типа string.")
        elif type_ok:
            allowed = METRIC_TYPES[mtype]
            if allowed and mname not in allowed:
                add(f"{at}.metric.name", _NOT_ALLOWED)
            elif not allowed and mname in CALLTOUCH_METRIC_NAMES:
                add(f"{at}.metric.name", _NOT_UNIQUE)
        if mvalue is None:
            add(f"{at}.metric.value", _EMPTY)
        elif isinstance(mvalue, bool) or not isinstance(mvalue, int):
            add(f"{at}.metric.value", "Значение должно быть типа int.")
    return plans_violations(violations) if violations else None


@router.post("/report-service/RestAPI/api/plans-import/add")
async def plans_add(request: Request) -> Response:
    """Validate and store a plans import; answer its ``importLogId``."""
    st = _state(request)
    site, error = _plans_auth(st, request)
    if error is not None:
        return error
    raw = await request.body()
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if body is None:
        return plans_api_error(400, 1, "Синтаксическая ошибка JSON в запросе или запрос пустой")
    error = validate_plans(body)
    if error is not None:
        return error
    entry = PlansImport(
        id=st.next_plans_id,
        site_id=site or 0,
        items=body["items"],
        created_monotonic=time.monotonic(),
        ends_in_error=st.faults.plans_status_error,
    )
    st.next_plans_id += 1
    st.plans.append(entry)
    return _json({"meta": [], "data": {"importLogId": entry.id}})


@router.api_route("/report-service/RestAPI/api/plans-import/{import_id}/status", methods=["POST", "GET"])
async def plans_status(import_id: str, request: Request) -> Response:
    """Status of an import: ``in progress...`` then ``success`` (or ``error``), echoing the items."""
    st = _state(request)
    site, error = _plans_auth(st, request)
    if error is not None:
        return error
    found = next((p for p in st.plans if p.id == parse_id(import_id) and p.site_id == site), None)
    if found is None:
        return plans_api_error(404, 2, f"Импорт с идентификатором {import_id} не найден")
    status = found.status(st.config.plans_in_progress_seconds, time.monotonic())
    return _json({"meta": [], "data": {"status": status, "items": found.items}})
