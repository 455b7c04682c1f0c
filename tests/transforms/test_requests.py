"""Tests of :func:`calltouch_metrika.transforms.requests.requests_to_table` (pure: no sandbox, no Airflow).

The central fixture is the response example of seed 004, copied verbatim with its odd keys
(``RequestTags`` capitalised, the undocumented ``requestType``/``status``/``order``, extra keys in
the order's session). One fix was needed to make it JSON at all: the seed writes
``"widgetInfo: {`` (the closing quote of the key is missing); here it is ``"widgetInfo": {``. The
seed's trailing ``, ... { ... }`` placeholder is dropped.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calltouch_metrika.transforms.requests import (
    COLUMN_SOURCES,
    REQUEST_REJECT_REASONS,
    REQUESTS_SCHEMA,
    RequestRecordError,
    RequestReject,
    parse_tag_names,
    requests_to_table,
)

#: Seed 004's "Пример ответа", verbatim except for the widgetInfo quote (see the module docstring).
SEED_004_SAMPLE = r"""[
{
"date": 1554382259240,
"comments": [
{
"commentId": 7319,
"requestId": 145507,
"comment": "Колин комментарий",
"partyId": 19688,
"partyName": "API"
}
],
"requestType": "CLIENT_ORDER",
"dateStr": "04/04/2019 15:50:59",
"manager": "Вася",
"session": {
"keywords": "(not set)",
"city": "moscow",
"ip": "95.163.114.76/32",
"browser": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.75 Safari/537.36",
"source": "(direct)",
"medium": "(none)",
"ref": "",
"url": "https://alftest.ru/calltouch/supertest/",
"utmSource": "<не указано>",
"utmMedium": "<не указано>",
"utmTerm": "<не указано>",
"utmContent": "<не указано>",
"utmCampaign": "<не указано>",
"guaClientId": null,
"yaClientId": null,
"sessionId": 16441053,
"additionalTags": [],
"attribution": 1,
"attrs": null
},
"subject": "Заявка на звонок",
"uniqTargetRequest": true, "requestUrl": "https://test.ru/123",
"mapVisits": [
{
"utmSource": "<не указано>",
"sessionDate": "03/04/2019 16:02:51",
"city": "moscow",
"ip": "95.163.114.76/32",
"utmTerm": "<не указано>",
"utmContent": "<не указано>",
"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.75 Safari/537.36",
"sessionId": 15952760,
"source": "(direct)",
"medium": "(none)",
"utmCampaign": "<не указано>",
"url": "https://alftest.ru/calltouch/supertest/",
"ref": "",
"additionalTags": [],
"utmMedium": "<не указано>",
"guaClientId": null,
"keyword": "(not set)"
},
{
"utmSource": "<не указано>",
"sessionDate": "04/04/2019 15:50:34",
"city": "moscow",
"ip": "95.163.114.76/32",
"utmTerm": "<не указано>",
"utmContent": "<не указано>",
"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.75 Safari/537.36",
"sessionId": 16441053,
"source": "(direct)",
"medium": "(none)",
"utmCampaign": "<не указано>",
"url": "https://alftest.ru/calltouch/supertest/",
"ref": "",
"additionalTags": [],
"utmMedium": "<не указано>",
"guaClientId": null,
"keyword": "(not set)"
}
],
"uniqueRequest": true, "widgetInfo": { "fields": [ { "name": "Имя", "value": "Андрей" }, { "name": "Номер телефона", "value": "+7 (977) 684-11-08", "type": "phone", "title": null } ] }, "RequestTags": [ { "category": "", "type": "AUTO-CT", "names": [ "Тег заявки" ] } ],
"requestNumber": "145507",
"requestId": 145507,
"client": {
"fio": "Коля",
"clientId": 640236,
"phones": [
{
"phoneNumber": "79991234567",
"phoneType": "OTHER"
}
],
"contacts": [
{
"contactType": "EMAIL",
"contactValue": "kolya@yandex.ru"
}
]
},
"orders": [
{
"orderId": 119901,
"callId": null,
"dateCreated": 1554382620000,
"status": "PENDING",
"realSum": "2800.0000",
"offered": null,
"sent": "04.04.2019",
"sum": "2800.0000",
"isMarked": null,
"commentsCount": 0,
"currentAmount": 2800,
"orderNumber": "119901",
"orderSum": "2800.0000",
"orderStatus": "PENDING",
"orderComments": "",
"session": {
"keywords": "(not set)",
"city": "moscow",
"ip": "95.163.114.76/32",
"browser": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.75 Safari/537.36", "device": "desktop", "os": "Windows", "browserName": "Chrome",
"source": "(direct)",
"medium": "(none)",
"ref": "",
"url": "https://alftest.ru/calltouch/supertest/",
"utmSource": "<не указано>",
"utmMedium": "<не указано>",
"utmTerm": "<не указано>",
"utmContent": "<не указано>",
"utmCampaign": "<не указано>",
"guaClientId": null,
"yaClientId": null,
"sessionId": 16441053,
"additionalTags": [],
"attribution": 1,
"attrs": null
}
}
],
"targetRequest": true,
"status": "NOT_SET",
"order": {
"orderId": 119901,
"callId": null,
"dateCreated": 1554382620000,
"status": "PENDING",
"realSum": "2800.0000",
"offered": null,
"sent": "04.04.2019",
"sum": "2800.0000",
"isMarked": null,
"commentsCount": 0,
"currentAmount": 2800,
"orderNumber": "119901",
"orderSum": "2800.0000",
"orderStatus": "PENDING",
"orderComments": "",
"session": {
"keywords": "(not set)",
"city": "moscow",
"ip": "95.163.114.76/32",
"browser": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/73.0.3683.75 Safari/537.36",
"source": "(direct)",
"medium": "(none)",
"ref": "",
"url": "https://alftest.ru/calltouch/supertest/",
"utmSource": "<не указано>",
"utmMedium": "<не указано>",
"utmTerm": "<не указано>",
"utmContent": "<не указано>",
"utmCampaign": "<не указано>",
"guaClientId": null,
"yaClientId": null,
"sessionId": 16441053,
"additionalTags": [],
"attribution": 1,
"attrs": null
}
}
}
]"""


def seed_records() -> list[dict[str, Any]]:
    """A fresh copy of the seed's records (tests may mutate it)."""
    return json.loads(SEED_004_SAMPLE)


def roundtrip(table: pa.Table) -> pa.Table:
    """Write ``table`` to Parquet in memory and read it back, as the extract task does on storage."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    return pq.read_table(buf)


# ---------------------------------------------------------------------------------------------
# The seed's example response
# ---------------------------------------------------------------------------------------------


def test_seed_sample_scalars_are_typed() -> None:
    table = requests_to_table(seed_records())
    assert table.schema.equals(REQUESTS_SCHEMA, check_metadata=True)
    assert table.num_rows == 1
    row = roundtrip(table).to_pylist()[0]
    assert row["request_id"] == 145507
    assert row["request_number"] == "145507"
    assert row["site_id"] is None  # the example has no siteId
    assert row["date_ms"] == 1554382259240
    # date is Unix *milliseconds*: 1554382259.240 s = 2019-04-04 12:50:59.240 UTC = 15:50:59 Moscow,
    # which is exactly the example's dateStr.
    assert row["created_at"] == datetime(2019, 4, 4, 12, 50, 59, 240000, tzinfo=UTC)
    assert row["date_str"] == "04/04/2019 15:50:59"
    assert row["subject"] == "Заявка на звонок"
    assert row["request_url"] == "https://test.ru/123"
    assert row["manager"] == "Вася"
    assert row["unique_request"] is True
    assert row["target_request"] is True
    assert row["uniq_target_request"] is True
    assert row["ct_client_id"] is None
    assert row["session_id"] == 16441053
    assert row["ya_client_id"] is None
    assert row["client_name"] == "Коля"
    assert row["client_phones"] == ["79991234567"]
    assert row["client_emails"] == ["kolya@yandex.ru"]
    assert row["tag_names"] == ["Тег заявки"]


def test_seed_sample_nested_objects() -> None:
    row = roundtrip(requests_to_table(seed_records())).to_pylist()[0]
    assert row["comments"] == [
        {
            "comment_id": 7319,
            "request_id": 145507,
            "comment": "Колин комментарий",
            "party_id": 19688,
            "party_name": "API",
        }
    ]
    session = row["session"]
    assert session["session_id"] == 16441053
    assert session["keywords"] == "(not set)"
    assert session["city"] == "moscow"
    assert session["ip"] == "95.163.114.76/32"
    assert session["source"] == "(direct)"
    assert session["medium"] == "(none)"
    assert session["ref"] == ""  # empty string is data, not null
    assert session["utm_source"] == "<не указано>"
    assert session["attribution"] == 1
    assert session["additional_tags"] == "[]"
    assert session["attrs"] is None
    assert session["device"] is None  # documented but absent in the request's session

    assert [v["session_id"] for v in row["map_visits"]] == [15952760, 16441053]
    assert [v["session_date"] for v in row["map_visits"]] == ["03/04/2019 16:02:51", "04/04/2019 15:50:34"]
    assert row["map_visits"][0]["user_agent"].startswith("Mozilla/5.0 (Windows NT 10.0")
    assert row["map_visits"][0]["keyword"] == "(not set)"

    assert row["client"] == {
        "client_id": 640236,
        "fio": "Коля",
        "phones": [{"phone_number": "79991234567", "phone_type": "OTHER"}],
        "contacts": [{"contact_type": "EMAIL", "contact_value": "kolya@yandex.ru"}],
    }
    assert row["orders"] == [
        {
            "order_id": 119901,
            "order_number": "119901",
            "date_created": datetime(2019, 4, 4, 12, 57, tzinfo=UTC),  # 1554382620000 ms
            "status": "PENDING",
            "sum": "2800.0000",
        }
    ]
    assert row["request_tags"] == [{"category": "", "type": "AUTO-CT", "names": ["Тег заявки"]}]
    assert row["widget_info"] == {
        "fields": [
            {"name": "Имя", "value": "Андрей", "type": None, "title": None},
            {"name": "Номер телефона", "value": "+7 (977) 684-11-08", "type": "phone", "title": None},
        ]
    }
    # Not requested in the example (no with* flag): null, not an empty list.
    for column in ("yandex_direct", "google_adwords", "dcm", "custom_fields", "attrs"):
        assert row[column] is None, column


def test_seed_sample_undocumented_keys_are_ignored() -> None:
    """requestType, status and order are not described by the seed, so they are obsolete: ignored."""
    records = seed_records()
    assert {"requestType", "status", "order"} <= set(records[0])
    table = requests_to_table(records)
    assert table.column_names == REQUESTS_SCHEMA.names
    for name in ("request_type", "requestType", "status", "order"):
        assert name not in table.column_names
    # Adding more unknown keys, top level and nested, changes nothing.
    records[0]["brandNewField"] = {"x": 1}
    records[0]["session"]["somethingElse"] = [1, 2]
    records[0]["orders"][0]["extra"] = "?"
    assert requests_to_table(records).equals(table)


# ---------------------------------------------------------------------------------------------
# Seed 004's specific rules
# ---------------------------------------------------------------------------------------------


def test_comment_trailing_newline_is_preserved() -> None:
    records = seed_records()
    records[0]["comments"].append(
        {
            "commentId": 7320,
            "requestId": 145507,
            "comment": "перезвонить\\nзавтра\n",
            "partyId": 1,
            "partyName": "x",
        }
    )
    records[0]["comments"][0]["comment"] = "Колин комментарий\n"
    row = roundtrip(requests_to_table(records)).to_pylist()[0]
    assert [c["comment"] for c in row["comments"]] == ["Колин комментарий\n", "перезвонить\\nзавтра\n"]


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ([{"names": ["Тег заявки"]}], ["Тег заявки"]),
        ([{"names": ["a,b"]}], ["a", "b"]),
        ([{"names": ["a, b ,c"]}, {"names": ["d"]}], ["a", "b", "c", "d"]),
        ([{"names": ["b", "a,b"]}, {"names": ["a"]}], ["b", "a"]),  # first appearance, no repeats
        ([{"names": [",", " , x,,"]}], ["x"]),  # empty pieces dropped
        ([{"names": []}, {"names": None}], []),
        (None, []),
    ],
)
def test_parse_tag_names(groups: list[dict[str, Any]] | None, expected: list[str]) -> None:
    assert parse_tag_names(groups) == expected


def test_tag_names_column_from_comma_separated_names() -> None:
    records = seed_records()
    records[0]["RequestTags"] = [
        {"category": "", "type": "AUTO-CT", "names": ["Лид, Москва"]},
        {"category": "ручной", "type": "MANUAL", "names": ["VIP", "Москва"]},
    ]
    row = requests_to_table(records).to_pylist()[0]
    assert row["tag_names"] == ["Лид", "Москва", "VIP"]
    # The raw groups are kept as the API sent them.
    assert row["request_tags"][0]["names"] == ["Лид, Москва"]


def test_tags_not_requested_vs_no_tags() -> None:
    records = seed_records() + seed_records()
    del records[0]["RequestTags"]
    records[1]["RequestTags"] = []
    rows = requests_to_table(records).to_pylist()
    assert rows[0]["request_tags"] is None and rows[0]["tag_names"] == []
    assert rows[1]["request_tags"] == [] and rows[1]["tag_names"] == []


def test_optional_blocks_when_requested() -> None:
    """Every block a with* flag adds, in the shape the seed documents."""
    records = seed_records()
    records[0].update(
        {
            "siteId": 10001,
            "ctClientId": 2002453452,
            "yandexDirect": {
                "campaignId": 32515134,
                "adGroupId": 325245212134,
                "adId": 2546356252,
                "criteriaId": 254251323,
            },
            "googleAdWords": {
                "campaignId": 35635656,
                "adGroupId": 134524245,
                "creativeId": 23134141,
                "criteriaId": 4324553542,
            },
            "attrs": {"param1": "value1", "param2": "value2"},
            "dcm": [
                {
                    "profileIdDCM": 1411789,
                    "floodlightConfigurationId": "10355394",
                    "floodlightActivityId": "10501143",
                    "requestStatus": "ERROR",
                    "requestErrors": "HTTP_AUTH_ERROR",
                }
            ],
            "customFields": [
                {"field": "name", "value": "Вася"},
                {"field": "birthday", "value": "1990-01-01"},
            ],
        }
    )
    row = roundtrip(requests_to_table(records)).to_pylist()[0]
    assert row["site_id"] == 10001
    assert row["ct_client_id"] == "2002453452"
    assert row["yandex_direct"] == {
        "campaign_id": 32515134,
        "ad_group_id": 325245212134,
        "ad_id": 2546356252,
        "criteria_id": 254251323,
    }
    assert row["google_adwords"] == {
        "campaign_id": 35635656,
        "ad_group_id": 134524245,
        "creative_id": 23134141,
        "criteria_id": 4324553542,
    }
    assert json.loads(row["attrs"]) == {"param1": "value1", "param2": "value2"}
    assert row["dcm"] == [
        {
            "profile_id_dcm": 1411789,
            "floodlight_configuration_id": "10355394",
            "floodlight_activity_id": "10501143",
            "request_status": "ERROR",
            "request_errors": "HTTP_AUTH_ERROR",
        }
    ]
    assert row["custom_fields"] == [
        {"field": "name", "value": "Вася"},
        {"field": "birthday", "value": "1990-01-01"},
    ]


def test_dcm_null_vs_empty() -> None:
    """Seed: dcm is null without withDcm, [] with withDcm and no sends."""
    records = seed_records() + seed_records()
    records[0]["dcm"] = None
    records[1]["dcm"] = []
    assert [r["dcm"] for r in requests_to_table(records).to_pylist()] == [None, []]


def test_lenient_spellings_and_types() -> None:
    """Values the API (or its older versions) sends as strings, and the seed's alternative key spellings."""
    records = seed_records()
    rec = records[0]
    rec["requestId"] = "145507"
    rec["date"] = "1554382259240"
    rec["uniqueRequest"] = "false"
    rec["targetRequest"] = "True"
    rec["uniqTargetRequest"] = 0
    rec["requestNumber"] = 145507
    rec["session"]["yaClientId"] = 1554382259123456789
    rec["mapVisits"][0]["sessionID"] = rec["mapVisits"][0].pop("sessionId")  # the seed lists both spellings
    rec["googleAdwords"] = {"campaignId": "1", "adGroupId": 2, "creativeId": 3.0, "criteriaId": None}
    rec["requestTags"] = rec.pop("RequestTags")
    row = requests_to_table(records).to_pylist()[0]
    assert row["request_id"] == 145507
    assert row["date_ms"] == 1554382259240
    assert (row["unique_request"], row["target_request"], row["uniq_target_request"]) == (False, True, False)
    assert row["request_number"] == "145507"
    assert row["ya_client_id"] == "1554382259123456789"
    assert row["map_visits"][0]["session_id"] == 15952760
    assert row["google_adwords"] == {
        "campaign_id": 1,
        "ad_group_id": 2,
        "creative_id": 3,
        "criteria_id": None,
    }
    assert row["tag_names"] == ["Тег заявки"]


def test_null_session_and_client() -> None:
    """Seed: session is null when no Calltouch session id was sent; orders then are empty."""
    records = seed_records()
    records[0].update(session=None, client=None, orders=[], mapVisits=None)
    row = requests_to_table(records).to_pylist()[0]
    assert row["session"] is None and row["session_id"] is None and row["ya_client_id"] is None
    assert row["client"] is None and row["client_name"] is None
    assert row["client_phones"] == [] and row["client_emails"] == []
    assert row["orders"] == [] and row["map_visits"] is None


# ---------------------------------------------------------------------------------------------
# Schema stability
# ---------------------------------------------------------------------------------------------


def test_empty_day_has_the_full_schema() -> None:
    table = requests_to_table([])
    assert table.num_rows == 0
    assert table.schema.equals(REQUESTS_SCHEMA, check_metadata=True)
    back = roundtrip(table)
    assert back.num_rows == 0 and back.schema.equals(REQUESTS_SCHEMA)


def test_sparse_record_has_the_full_schema() -> None:
    table = requests_to_table([{"requestId": 1}])
    assert table.schema.equals(REQUESTS_SCHEMA)
    row = table.to_pylist()[0]
    assert row["request_id"] == 1
    assert all(v in (None, []) for k, v in row.items() if k != "request_id")
    # Days with and without data concatenate (what a reader of many partitions does).
    assert pa.concat_tables([requests_to_table([]), table, requests_to_table(seed_records())]).num_rows == 2


def test_columns_are_snake_case_and_documented() -> None:
    assert set(COLUMN_SOURCES) == set(REQUESTS_SCHEMA.names)
    for name in REQUESTS_SCHEMA.names:
        assert name == name.lower() and " " not in name, name


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error naming the record and the field
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(requestId="abc"), r"requests\[1\]\.requestId: expected an integer, got 'abc'"),
        (lambda r: r.pop("requestId"), r"requests\[1\]: the record has no requestId"),
        (lambda r: r.update(date=1.5), r"requests\[1\] \(requestId=145507\)\.date: expected an integer"),
        (
            lambda r: r.update(session="moscow"),
            r"\(requestId=145507\)\.session: expected an object, got 'moscow'",
        ),
        (lambda r: r.update(orders={"orderId": 1}), r"\(requestId=145507\)\.orders: expected an array"),
        (
            lambda r: r["mapVisits"][1].update(sessionId="x"),
            r"\(requestId=145507\)\.mapVisits\[1\]\.sessionId: expected an integer, got 'x'",
        ),
        (lambda r: r.update(uniqueRequest="maybe"), r"\.uniqueRequest: expected a boolean, got 'maybe'"),
        (lambda r: r.update(subject={"a": 1}), r"\.subject: expected a string"),
        (
            lambda r: r["client"].update(clientId=2**63),
            r"\.client\.clientId: expected an integer that fits in 64 bits",
        ),
    ],
)
def test_bad_values_name_record_and_field(mutate: Any, message: str) -> None:
    records = seed_records() + seed_records()
    mutate(records[1])
    with pytest.raises(RequestRecordError, match=message):
        requests_to_table(records)


def test_not_a_list_or_not_objects() -> None:
    with pytest.raises(RequestRecordError, match="expected a list of request objects, got dict"):
        requests_to_table({"records": []})  # type: ignore[arg-type]
    with pytest.raises(RequestRecordError, match=r"requests\[0\]: expected an object, got 'x'"):
        requests_to_table(["x"])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# Properties and purity
# ---------------------------------------------------------------------------------------------

_text = st.text(max_size=12)
_maybe_int = st.one_of(st.none(), st.integers(-(2**62), 2**62))


@st.composite
def request_records(draw: st.DrawFn) -> dict[str, Any]:
    """Records with any subset of keys and any valid value; plus junk keys that must be ignored."""
    rec: dict[str, Any] = {"requestId": draw(st.integers(1, 2**53))}
    optional = {
        "requestNumber": st.one_of(st.none(), _text, st.integers(0, 10**9)),
        "date": st.one_of(st.none(), st.integers(0, 4 * 10**12)),
        "subject": st.one_of(st.none(), _text),
        "manager": st.one_of(st.none(), _text),
        "uniqueRequest": st.one_of(st.none(), st.booleans()),
        "ctClientId": st.one_of(st.none(), _text, _maybe_int),
        "comments": st.lists(st.fixed_dictionaries({"commentId": _maybe_int, "comment": _text}), max_size=3),
        "RequestTags": st.one_of(
            st.none(), st.lists(st.fixed_dictionaries({"names": st.lists(_text, max_size=3)}), max_size=3)
        ),
        "session": st.one_of(st.none(), st.fixed_dictionaries({"sessionId": _maybe_int, "city": _text})),
        "customFields": st.one_of(
            st.none(),
            st.lists(st.fixed_dictionaries({"field": _text, "value": st.one_of(_text, st.integers())})),
        ),
        "someObsoleteKey": st.one_of(st.none(), _text, st.lists(st.integers())),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            rec[key] = draw(strategy)
    return rec


@settings(max_examples=60, deadline=None)
@given(st.lists(request_records(), max_size=6))
def test_any_valid_records_give_one_row_each_with_the_fixed_schema(records: list[dict[str, Any]]) -> None:
    table = requests_to_table(records)
    assert table.schema.equals(REQUESTS_SCHEMA)
    assert table.num_rows == len(records)
    assert table.column("request_id").to_pylist() == [r["requestId"] for r in records]
    for rec, tags in zip(records, table.column("tag_names").to_pylist(), strict=True):
        names = [n for g in rec.get("RequestTags") or () for n in g["names"]]
        assert all("," not in t and t == t.strip() and t for t in tags)
        assert set(tags) == {p.strip() for n in names for p in n.split(",") if p.strip()}


def test_module_is_pure() -> None:
    """No Airflow and no pandas behind the import: the transform runs anywhere, parses fast."""
    code = (
        "import sys, calltouch_metrika.transforms.requests; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'pandas', 'requests', 'fsspec')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Issue 13 §2 findings (items 4, 6): one bad item never fails the day; text is always storable
# ---------------------------------------------------------------------------------------------


def _parquet_round_trip(table: pa.Table) -> pa.Table:
    import io

    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    return pq.read_table(buffer)


def test_a_lone_surrogate_is_replaced_and_the_day_written() -> None:
    """Before: pq.write_table raised UnicodeEncodeError: surrogates not allowed."""
    records = seed_records()
    records[0]["subject"] = "a\ud800"
    records[0]["attrs"] = {"\udc00k": "v\ud800"}
    records[0]["comments"][0]["comment"] = "\ud800\n"
    table = _parquet_round_trip(requests_to_table(records))
    row = table.slice(0, 1).to_pylist()[0]
    assert row["subject"] == "a\ufffd"
    assert json.loads(row["attrs"]) == {"\ufffdk": "v\ufffd"}
    assert row["comments"][0]["comment"] == "\ufffd\n"


@pytest.mark.parametrize("item", [None, "x", 5, [], 1.5, True])
def test_a_non_object_item_is_a_counted_reject_not_a_failed_day(item: Any) -> None:
    """Before: requests_to_table([{...}, None]) raised RequestRecordError and the day failed."""
    good = seed_records()[0]
    rejects: list[RequestReject] = []
    table = requests_to_table([good, item, good | {"requestId": 7}], rejects=rejects)
    assert table.column("request_id").to_pylist() == [good["requestId"], 7]
    assert [(r.index, r.reason, r.request_id) for r in rejects] == [(1, "malformed_record", None)]
    assert "requests[1]" in rejects[0].detail


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.pop("requestId"), "missing_request_id"),
        (lambda r: r.update(requestId="1e3"), "missing_request_id"),
        (lambda r: r.update(requestId="１２"), "missing_request_id"),
        (lambda r: r.update(requestId=1.2345678901234567e18), "missing_request_id"),
        (lambda r: r.update(requestId=-5), "missing_request_id"),
        (lambda r: r.update(session="moscow"), "invalid_value"),
        (lambda r: r.update(date=1.5), "invalid_value"),
    ],
)
def test_a_record_that_cannot_be_stored_is_a_reject_with_its_reason(mutate: Any, reason: str) -> None:
    records = seed_records() + seed_records()
    records[1]["requestId"] = 99
    mutate(records[1])
    rejects: list[RequestReject] = []
    table = requests_to_table(records, rejects=rejects)
    assert table.num_rows + len(rejects) == len(records) == 2
    assert [(r.index, r.reason) for r in rejects] == [(1, reason)]
    assert reason in REQUEST_REJECT_REASONS
    if reason == "invalid_value":
        assert rejects[0].request_id == 99
    assert rejects[0].as_dict()["reason"] == reason


def test_without_a_rejects_list_a_bad_item_still_raises_naming_it() -> None:
    with pytest.raises(RequestRecordError, match=r"requests\[1\]: expected an object, got None"):
        requests_to_table([seed_records()[0], None])
