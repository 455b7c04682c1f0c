"""Calltouch request (lead, «заявка») records -> one Arrow table with a fixed schema.

The requests journal (``GET /calls-service/RestAPI/requests``, seed 004) answers with a bare JSON
array of loosely typed objects. Analysts join the dataset with CRM and ad data day by day, so every
day's file must have the *same* columns with the *same* types, whatever the API sent that day
(even nothing at all). :func:`requests_to_table` gives exactly that:

* one row per request, columns in ``snake_case`` (warehouses that fold identifiers to lower case
  would turn ``requestId`` into ``requestid``); :data:`COLUMN_SOURCES` says which API key feeds
  which column;
* scalars typed per seed 004: ids are ``int64``, flags ``bool``, ``date`` (Unix **milliseconds**)
  is kept as ``date_ms`` and also given as ``created_at`` (``timestamp[ms, UTC]``); ``date_str``
  is kept verbatim (local time of the project, as the API writes it);
* nested objects whose shape seed 004 documents (``session``, ``client``, ``orders``,
  ``mapVisits``, ``comments``, ``yandexDirect``, ``googleAdWords``, ``dcm``, ``widgetInfo``,
  ``customFields``, ``RequestTags``) are typed struct / list columns holding the documented keys;
  free-form parts (``attrs``, ``additionalTags``) are JSON strings;
* tag names are parsed as the seed prescribes: from ``RequestTags[i].names``, where a comma
  separates several tags -> ``tag_names`` (``list<string>``, in order of appearance, no duplicates);
* comment texts are kept byte for byte, including the trailing ``\\n`` the seed warns about;
* keys the seed does not describe (``requestType``, ``status``, ``order``, ...) are obsolete per
  the seed ("JSON-объекты, не описанные выше ... следует игнорировать") and are ignored.

Identifiers the API may send as numbers or strings (``ctClientId``, ``yaClientId``,
``ctGlobalId``, ``requestNumber``) are stored as strings so that nothing is lost or reformatted.

This module is pure: no I/O and no Airflow import, so it can be tested and benchmarked alone.
A record that cannot be typed raises :class:`RequestRecordError` naming the record and the field,
or, when the caller collects rejects (the extract operator does), is left out as a
:class:`RequestReject` with a reason code (:data:`REQUEST_REJECT_REASONS`): an item that is not an
object (``null``, ``"x"``, ``5``), a record without a usable ``requestId``, a value that cannot be
typed. Lone surrogates in text become U+FFFD, so the day's Parquet file can always be written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from calltouch_metrika.transforms.text import clean_text

__all__ = [
    "COLUMN_SOURCES",
    "REQUESTS_SCHEMA",
    "REQUEST_REJECT_REASONS",
    "RequestRecordError",
    "RequestReject",
    "parse_tag_names",
    "requests_to_table",
]


class RequestRecordError(ValueError):
    """A request record has a value that cannot be given the dataset's type.

    The message names the record (its position and ``requestId``), the field path and the value.
    """


class _NoRequestId(RequestRecordError):
    """The record has no usable ``requestId``."""


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

_str = pa.string()
_i64 = pa.int64()
_bool = pa.bool_()
_ts = pa.timestamp("ms", tz="UTC")

SESSION_TYPE = pa.struct(
    [
        ("session_id", _i64),
        ("keywords", _str),
        ("city", _str),
        ("ip", _str),
        ("browser", _str),
        ("source", _str),
        ("medium", _str),
        ("ref", _str),
        ("url", _str),
        ("utm_source", _str),
        ("utm_medium", _str),
        ("utm_term", _str),
        ("utm_content", _str),
        ("utm_campaign", _str),
        ("device", _str),
        ("os", _str),
        ("browser_name", _str),
        ("gua_client_id", _str),
        ("ya_client_id", _str),
        ("ct_global_id", _str),
        ("attribution", _i64),
        ("additional_tags", _str),  # JSON: shape undocumented
        ("attrs", _str),  # JSON: free-form third-party parameters
    ]
)

COMMENT_TYPE = pa.struct(
    [
        ("comment_id", _i64),
        ("request_id", _i64),
        ("comment", _str),
        ("party_id", _i64),
        ("party_name", _str),
    ]
)

CLIENT_TYPE = pa.struct(
    [
        ("client_id", _i64),
        ("fio", _str),
        ("phones", pa.list_(pa.struct([("phone_number", _str), ("phone_type", _str)]))),
        ("contacts", pa.list_(pa.struct([("contact_type", _str), ("contact_value", _str)]))),
    ]
)

ORDER_TYPE = pa.struct(
    [
        ("order_id", _i64),
        ("order_number", _str),
        ("date_created", _ts),
        ("status", _str),
        ("sum", _str),  # the API sends money as a decimal string ("2800.0000"): kept exact
    ]
)

VISIT_TYPE = pa.struct(
    [
        ("session_id", _i64),
        ("session_date", _str),
        ("city", _str),
        ("ip", _str),
        ("user_agent", _str),
        ("source", _str),
        ("medium", _str),
        ("keyword", _str),
        ("url", _str),
        ("ref", _str),
        ("utm_source", _str),
        ("utm_medium", _str),
        ("utm_campaign", _str),
        ("utm_content", _str),
        ("utm_term", _str),
        ("gua_client_id", _str),
        ("ct_client_id", _str),
        ("ct_global_id", _str),
        ("additional_tags", _str),  # JSON
    ]
)

YANDEX_DIRECT_TYPE = pa.struct(
    [("campaign_id", _i64), ("ad_group_id", _i64), ("ad_id", _i64), ("criteria_id", _i64)]
)
GOOGLE_ADWORDS_TYPE = pa.struct(
    [("campaign_id", _i64), ("ad_group_id", _i64), ("creative_id", _i64), ("criteria_id", _i64)]
)
DCM_TYPE = pa.struct(
    [
        ("profile_id_dcm", _i64),
        ("floodlight_configuration_id", _str),
        ("floodlight_activity_id", _str),
        ("request_status", _str),
        ("request_errors", _str),
    ]
)
WIDGET_FIELD_TYPE = pa.struct([("name", _str), ("value", _str), ("type", _str), ("title", _str)])
WIDGET_INFO_TYPE = pa.struct([("fields", pa.list_(WIDGET_FIELD_TYPE))])
CUSTOM_FIELD_TYPE = pa.struct([("field", _str), ("value", _str)])
REQUEST_TAG_TYPE = pa.struct([("category", _str), ("type", _str), ("names", pa.list_(_str))])

#: The dataset's schema: the same columns, in this order, for every day (an empty day included).
REQUESTS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("request_id", _i64, nullable=False),
        pa.field("request_number", _str),
        pa.field("site_id", _i64),
        pa.field("date_ms", _i64),
        pa.field("created_at", _ts),
        pa.field("date_str", _str),
        pa.field("subject", _str),
        pa.field("request_url", _str),
        pa.field("manager", _str),
        pa.field("unique_request", _bool),
        pa.field("target_request", _bool),
        pa.field("uniq_target_request", _bool),
        pa.field("ct_client_id", _str),
        # Flat copies of the most joined nested values (also present inside the structs).
        pa.field("session_id", _i64),
        pa.field("ya_client_id", _str),
        pa.field("client_name", _str),
        pa.field("client_phones", pa.list_(_str)),
        pa.field("client_emails", pa.list_(_str)),
        pa.field("tag_names", pa.list_(_str)),
        # Nested objects.
        pa.field("session", SESSION_TYPE),
        pa.field("client", CLIENT_TYPE),
        pa.field("comments", pa.list_(COMMENT_TYPE)),
        pa.field("orders", pa.list_(ORDER_TYPE)),
        pa.field("map_visits", pa.list_(VISIT_TYPE)),
        pa.field("request_tags", pa.list_(REQUEST_TAG_TYPE)),
        pa.field("yandex_direct", YANDEX_DIRECT_TYPE),
        pa.field("google_adwords", GOOGLE_ADWORDS_TYPE),
        pa.field("dcm", pa.list_(DCM_TYPE)),
        pa.field("widget_info", WIDGET_INFO_TYPE),
        pa.field("custom_fields", pa.list_(CUSTOM_FIELD_TYPE)),
        pa.field("attrs", _str),  # JSON
    ],
    metadata={
        b"calltouch_metrika.dataset": b"calltouch_requests",
        b"calltouch_metrika.schema_version": b"1",
    },
)

#: Column -> the API key(s) it comes from (first present wins), for documentation and tests.
COLUMN_SOURCES: dict[str, tuple[str, ...]] = {
    "request_id": ("requestId",),
    "request_number": ("requestNumber",),
    "site_id": ("siteId",),
    "date_ms": ("date",),
    "created_at": ("date",),
    "date_str": ("dateStr",),
    "subject": ("subject",),
    "request_url": ("requestUrl",),
    "manager": ("manager",),
    "unique_request": ("uniqueRequest",),
    "target_request": ("targetRequest",),
    "uniq_target_request": ("uniqTargetRequest",),
    "ct_client_id": ("ctClientId",),
    "session_id": ("session.sessionId",),
    "ya_client_id": ("session.yaClientId",),
    "client_name": ("client.fio",),
    "client_phones": ("client.phones[].phoneNumber",),
    "client_emails": ("client.contacts[contactType=EMAIL].contactValue",),
    "tag_names": ("RequestTags[].names",),
    "session": ("session",),
    "client": ("client",),
    "comments": ("comments",),
    "orders": ("orders",),
    "map_visits": ("mapVisits",),
    "request_tags": ("RequestTags", "requestTags"),
    "yandex_direct": ("yandexDirect",),
    "google_adwords": ("googleAdWords", "googleAdwords"),
    "dcm": ("dcm",),
    "widget_info": ("widgetInfo",),
    "custom_fields": ("customFields",),
    "attrs": ("attrs",),
}


# --------------------------------------------------------------------------------------------
# Scalar coercion: each takes the value and the field path (for the error message).
# --------------------------------------------------------------------------------------------

_Coerce = Callable[[Any, str], Any]


def _fail(path: str, expected: str, value: Any) -> RequestRecordError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return RequestRecordError(f"{path}: expected {expected}, got {shown}")


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_EXACT = 2**53
_INT_TEXT = re.compile(r"([+-]?[0-9]+)(?:\.0*)?", re.ASCII)


def _to_int(value: Any, path: str) -> int | None:
    """An int64 from an int, an integral float or a string of digits; ``None``/``""`` -> null."""
    result = _parse_int(value, path)
    if result is not None and not _INT64_MIN <= result <= _INT64_MAX:
        raise _fail(path, "an integer that fits in 64 bits", value)
    return result


def _parse_int(value: Any, path: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _fail(path, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # beyond 2^53 a double has lost digits: 1.2345678901234567e18 is not the id that was meant
        if math.isfinite(value) and value.is_integer() and abs(value) <= _FLOAT_EXACT:
            return int(value)
        raise _fail(path, "an integer (a float beyond 2^53 is not exact)", value)
    if isinstance(value, str):
        # ASCII digits only ("12", "-5", "12.0"): int() would also read "１２", "1_000" and float() "1e3"
        match = _INT_TEXT.fullmatch(value.strip())
        if match:
            return int(match.group(1))
    raise _fail(path, "an integer", value)


def _to_str(value: Any, path: str) -> str | None:
    """A string kept verbatim (no stripping: a comment's trailing ``\\n`` is data); numbers -> text."""
    if value is None:
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise _fail(path, "a string", value)


def _to_text(value: Any, path: str) -> str | None:
    """Like :func:`_to_str`, but objects and arrays become compact JSON instead of an error."""
    if isinstance(value, dict | list):
        return _to_json(value, path)
    return _to_str(value, path)


def _to_bool(value: Any, path: str) -> bool | None:
    """A boolean from JSON ``true``/``false``, ``0``/``1`` or the strings ``"true"``/``"false"``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _fail(path, "a boolean", value)


def _to_json(value: Any, path: str) -> str | None:
    """Free-form JSON kept as a compact string (UTF-8, keys in the API's order); null stays null."""
    if value is None:
        return None
    try:
        return clean_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise _fail(path, "JSON-serialisable data", value) from exc


def _to_ms(value: Any, path: str) -> int | None:
    """A Unix timestamp in milliseconds (seed 004: ``date``, orders' ``dateCreated``)."""
    return _to_int(value, path)


# --------------------------------------------------------------------------------------------
# Objects: (column, API key(s), coercion) triples applied to a dict.
# --------------------------------------------------------------------------------------------

_Spec = Sequence[tuple[str, tuple[str, ...], _Coerce]]


def _get(obj: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in obj and obj[key] is not None:
            return obj[key]
    return None


def _object(value: Any, path: str, spec: _Spec) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(path, "an object", value)
    return {column: coerce(_get(value, keys), f"{path}.{keys[0]}") for column, keys, coerce in spec}


def _list_of(
    value: Any, path: str, item: Callable[[Any, str], Any], *, drop_null_items: bool = True
) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail(path, "an array", value)
    out = [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return [v for v in out if v is not None] if drop_null_items else out


def _struct(spec: _Spec) -> _Coerce:
    return lambda value, path: _object(value, path, spec)


def _list(item: _Coerce) -> _Coerce:
    return lambda value, path: _list_of(value, path, item)


_SESSION_SPEC: _Spec = (
    ("session_id", ("sessionId",), _to_int),
    ("keywords", ("keywords",), _to_str),
    ("city", ("city",), _to_str),
    ("ip", ("ip",), _to_str),
    ("browser", ("browser",), _to_str),
    ("source", ("source",), _to_str),
    ("medium", ("medium",), _to_str),
    ("ref", ("ref",), _to_str),
    ("url", ("url",), _to_str),
    ("utm_source", ("utmSource",), _to_str),
    ("utm_medium", ("utmMedium",), _to_str),
    ("utm_term", ("utmTerm",), _to_str),
    ("utm_content", ("utmContent",), _to_str),
    ("utm_campaign", ("utmCampaign",), _to_str),
    ("device", ("device",), _to_str),
    ("os", ("os",), _to_str),
    ("browser_name", ("browserName",), _to_str),
    ("gua_client_id", ("guaClientId",), _to_str),
    ("ya_client_id", ("yaClientId",), _to_str),
    ("ct_global_id", ("ctGlobalId",), _to_str),
    ("attribution", ("attribution",), _to_int),
    ("additional_tags", ("additionalTags",), _to_json),
    ("attrs", ("attrs",), _to_json),
)

_COMMENT_SPEC: _Spec = (
    ("comment_id", ("commentId",), _to_int),
    ("request_id", ("requestId",), _to_int),
    ("comment", ("comment",), _to_str),
    ("party_id", ("partyId",), _to_int),
    ("party_name", ("partyName",), _to_str),
)

_CLIENT_SPEC: _Spec = (
    ("client_id", ("clientId",), _to_int),
    ("fio", ("fio",), _to_str),
    (
        "phones",
        ("phones",),
        _list(
            _struct((("phone_number", ("phoneNumber",), _to_str), ("phone_type", ("phoneType",), _to_str)))
        ),
    ),
    (
        "contacts",
        ("contacts",),
        _list(
            _struct(
                (("contact_type", ("contactType",), _to_str), ("contact_value", ("contactValue",), _to_str))
            )
        ),
    ),
)

_ORDER_SPEC: _Spec = (
    ("order_id", ("orderId",), _to_int),
    ("order_number", ("orderNumber",), _to_str),
    ("date_created", ("dateCreated",), _to_ms),
    ("status", ("status",), _to_str),
    ("sum", ("sum",), _to_str),
)

# Seed 004 lists both ``sessionID`` and ``sessionId`` for visits: either is accepted.
_VISIT_SPEC: _Spec = (
    ("session_id", ("sessionId", "sessionID"), _to_int),
    ("session_date", ("sessionDate",), _to_str),
    ("city", ("city",), _to_str),
    ("ip", ("ip",), _to_str),
    ("user_agent", ("userAgent",), _to_str),
    ("source", ("source",), _to_str),
    ("medium", ("medium",), _to_str),
    ("keyword", ("keyword",), _to_str),
    ("url", ("url",), _to_str),
    ("ref", ("ref",), _to_str),
    ("utm_source", ("utmSource",), _to_str),
    ("utm_medium", ("utmMedium",), _to_str),
    ("utm_campaign", ("utmCampaign",), _to_str),
    ("utm_content", ("utmContent",), _to_str),
    ("utm_term", ("utmTerm",), _to_str),
    ("gua_client_id", ("guaClientId",), _to_str),
    ("ct_client_id", ("ctClientId",), _to_str),
    ("ct_global_id", ("ctGlobalId",), _to_str),
    ("additional_tags", ("additionalTags",), _to_json),
)

_YANDEX_DIRECT_SPEC: _Spec = (
    ("campaign_id", ("campaignId",), _to_int),
    ("ad_group_id", ("adGroupId",), _to_int),
    ("ad_id", ("adId",), _to_int),
    ("criteria_id", ("criteriaId",), _to_int),
)
_GOOGLE_ADWORDS_SPEC: _Spec = (
    ("campaign_id", ("campaignId",), _to_int),
    ("ad_group_id", ("adGroupId",), _to_int),
    ("creative_id", ("creativeId",), _to_int),
    ("criteria_id", ("criteriaId",), _to_int),
)
_DCM_SPEC: _Spec = (
    ("profile_id_dcm", ("profileIdDCM",), _to_int),
    ("floodlight_configuration_id", ("floodlightConfigurationId",), _to_str),
    ("floodlight_activity_id", ("floodlightActivityId",), _to_str),
    ("request_status", ("requestStatus",), _to_str),
    ("request_errors", ("requestErrors",), _to_str),
)
_WIDGET_INFO_SPEC: _Spec = (
    (
        "fields",
        ("fields",),
        _list(
            _struct(
                (
                    ("name", ("name",), _to_str),
                    ("value", ("value",), _to_text),
                    ("type", ("type",), _to_str),
                    ("title", ("title",), _to_str),
                )
            )
        ),
    ),
)
_CUSTOM_FIELD_SPEC: _Spec = (("field", ("field",), _to_str), ("value", ("value",), _to_text))


def _tag_names_list(value: Any, path: str) -> list[str] | None:
    """``names`` of one tag group: an array of strings (a lone string is accepted as one element)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return _list_of(value, path, _to_str)


_REQUEST_TAG_SPEC: _Spec = (
    ("category", ("category",), _to_str),
    ("type", ("type",), _to_str),
    ("names", ("names",), _tag_names_list),
)


def parse_tag_names(request_tags: list[dict[str, Any]] | None) -> list[str]:
    """Tag names of one request, parsed as seed 004 says.

    Names come from ``RequestTags[i].names``; "if a comma occurs there, it separates tags and there
    are several". Each piece is stripped of surrounding blanks; empty pieces are dropped; order of
    first appearance is kept and repeats are dropped.

    :param request_tags: the typed ``request_tags`` value (``names`` already a list of strings).
    """
    seen: dict[str, None] = {}
    for group in request_tags or ():
        for name in group.get("names") or ():
            for piece in name.split(","):
                tag = piece.strip()
                if tag:
                    seen.setdefault(tag, None)
    return list(seen)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def _row(record: Any, index: int) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise _fail(f"requests[{index}]", "an object", record)
    where = f"requests[{index}]"
    try:
        request_id = _to_int(record.get("requestId"), f"{where}.requestId")
    except RequestRecordError as exc:
        raise _NoRequestId(str(exc)) from None
    if request_id is None:
        raise _NoRequestId(f"{where}: the record has no requestId")
    if request_id <= 0:
        raise _NoRequestId(f"{where}.requestId: expected a positive integer, got {request_id}")
    where = f"requests[{index}] (requestId={request_id})"

    def one(key: str | tuple[str, ...], coerce: _Coerce) -> Any:
        keys = (key,) if isinstance(key, str) else key
        return coerce(_get(record, keys), f"{where}.{keys[0]}")

    date_ms = one("date", _to_ms)
    session = one("session", _struct(_SESSION_SPEC))
    client = one("client", _struct(_CLIENT_SPEC))
    request_tags = one(("RequestTags", "requestTags"), _list(_struct(_REQUEST_TAG_SPEC)))
    return {
        "request_id": request_id,
        "request_number": one("requestNumber", _to_str),
        "site_id": one("siteId", _to_int),
        "date_ms": date_ms,
        "created_at": date_ms,
        "date_str": one("dateStr", _to_str),
        "subject": one("subject", _to_str),
        "request_url": one("requestUrl", _to_str),
        "manager": one("manager", _to_str),
        "unique_request": one("uniqueRequest", _to_bool),
        "target_request": one("targetRequest", _to_bool),
        "uniq_target_request": one("uniqTargetRequest", _to_bool),
        "ct_client_id": one("ctClientId", _to_str),
        "session_id": session["session_id"] if session else None,
        "ya_client_id": session["ya_client_id"] if session else None,
        "client_name": client["fio"] if client else None,
        "client_phones": [p["phone_number"] for p in client["phones"] or () if p["phone_number"]]
        if client
        else [],
        "client_emails": [
            c["contact_value"]
            for c in client["contacts"] or ()
            if c["contact_value"] and (c["contact_type"] or "").upper() == "EMAIL"
        ]
        if client
        else [],
        "tag_names": parse_tag_names(request_tags),
        "session": session,
        "client": client,
        "comments": one("comments", _list(_struct(_COMMENT_SPEC))),
        "orders": one("orders", _list(_struct(_ORDER_SPEC))),
        "map_visits": one("mapVisits", _list(_struct(_VISIT_SPEC))),
        "request_tags": request_tags,
        "yandex_direct": one("yandexDirect", _struct(_YANDEX_DIRECT_SPEC)),
        "google_adwords": one(("googleAdWords", "googleAdwords"), _struct(_GOOGLE_ADWORDS_SPEC)),
        "dcm": one("dcm", _list(_struct(_DCM_SPEC))),
        "widget_info": one("widgetInfo", _struct(_WIDGET_INFO_SPEC)),
        "custom_fields": one("customFields", _list(_struct(_CUSTOM_FIELD_SPEC))),
        "attrs": one("attrs", _to_json),
    }


#: reason code of a request record left out of the table -> what it means
REQUEST_REJECT_REASONS: dict[str, str] = {
    "malformed_record": "the item of the journal is not a JSON object (null, [], a string, a number)",
    "missing_request_id": "the record has no usable requestId (absent, or not an integer)",
    "invalid_value": "a field's value cannot be given the dataset's type (the detail names the field)",
}


@dataclass(frozen=True)
class RequestReject:
    """A request record left out of the table: its position in the answer, its id, why.

    :ivar index: position of the item in the API's array (0-based).
    :ivar request_id: the record's ``requestId`` when it has a usable one, else ``None``.
    :ivar reason: a code of :data:`REQUEST_REJECT_REASONS`.
    :ivar detail: the problem, naming the record and the field (at most ~200 characters).
    """

    index: int
    request_id: int | None
    reason: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Plain types, for XCom and logs."""
        return {
            "index": self.index,
            "request_id": self.request_id,
            "reason": self.reason,
            "detail": self.detail,
        }


def _reject_of(record: Any, index: int, exc: RequestRecordError) -> RequestReject:
    request_id = None
    if not isinstance(record, Mapping):
        reason = "malformed_record"
    elif isinstance(exc, _NoRequestId):
        reason = "missing_request_id"
    else:
        reason = "invalid_value"
        request_id = _to_int(record.get("requestId"), "requestId")
    return RequestReject(index=index, request_id=request_id, reason=reason, detail=clean_text(str(exc))[:200])


def requests_to_table(records: list[dict], *, rejects: list[RequestReject] | None = None) -> pa.Table:
    """Normalise Calltouch request records into a table with :data:`REQUESTS_SCHEMA`.

    One row per record, in the order given. An empty list gives an empty table with the full
    schema, so an empty day still writes a file readers can union with the others.

    ``null`` and "not requested" are kept apart where the API keeps them apart: e.g. ``dcm`` is
    null without ``withDcm`` and an empty list when there were no DCM sends.

    Text is stored as UTF-8: a lone surrogate (``"\\ud800"`` in the JSON) becomes U+FFFD
    (:func:`~calltouch_metrika.transforms.text.clean_text`).

    :param records: the API's response array (``CalltouchHook.get_requests``).
    :param rejects: how a bad record is handled. ``None`` (default): it raises. A list: the record is
        left out of the table and a :class:`RequestReject` (reason :data:`REQUEST_REJECT_REASONS`) is
        appended to it, so one bad item never fails the day and every item is accounted for
        (``len(records) == table.num_rows + len(rejects)``); the extract operator logs and counts them.
    :raises RequestRecordError: ``records`` is not a list; or (``rejects is None``) a record is not an
        object, has no ``requestId``, or a field cannot be typed; the message names
        ``requests[i] (requestId=...)`` and the field path.
    """
    if not isinstance(records, list):
        raise RequestRecordError(
            f"requests: expected a list of request objects, got {type(records).__name__}"
        )
    if rejects is None:
        rows = [_row(record, i) for i, record in enumerate(records)]
    else:
        rows = []
        for i, record in enumerate(records):
            try:
                rows.append(_row(record, i))
            except RequestRecordError as exc:
                rejects.append(_reject_of(record, i, exc))
    return pa.Table.from_pylist(rows, schema=REQUESTS_SCHEMA)
