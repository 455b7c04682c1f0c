"""The requests journal's fixed Arrow schema and its column tables (pure: no I/O, no Airflow).

:data:`REQUESTS_SCHEMA` is the dataset's schema, the same for every day (an empty day included);
:data:`COLUMN_SOURCES` says which API key (seed 004) feeds which column. The struct types give the
typed shape of the nested objects seed 004 documents. The records are typed into this schema by
:func:`calltouch_metrika.transforms.requests.requests_to_table`, which re-exports both names.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["COLUMN_SOURCES", "REQUESTS_SCHEMA"]


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
