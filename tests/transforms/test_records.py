"""calls_to_table / conform_calls_table: fixed schema, lenient typing, aliases, phone hashing."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calltouch_metrika.transforms.records import (
    BOOL_FIELDS,
    CALLS_SCHEMA,
    INT_FIELDS,
    INVALID_FIELDS_FIELD,
    JSON_FIELDS,
    PHONES_HASHED_METADATA_KEY,
    STRING_FIELDS,
    calls_to_table,
    conform_calls_table,
)

# A call as the calls-diary API returns it (api-notes §1.4), with the quirks seen in the wild.
API_CALL = {
    "callId": 400001,
    "date": "25/11/2024 10:00:00",
    "timestamp": 1732518000,
    "duration": 120,
    "waitingConnect": 7,
    "successful": True,
    "uniqueCall": "True",
    "targetCall": "false",
    "uniqTargetCall": 1,
    "callbackCall": None,
    "callerNumber": "79991234567",
    "phoneNumber": "74951234567",
    "redirectNumber": "+7 (495) 765-43-21",
    "yaClientId": "1554382259123456789",
    "sessionId": "16441053",
    "ctClientId": 640236.0,
    "siteId": 10001,
    "attribution": 1,
    "utmSource": "<не указано>",
    "url": "https://example.ru/landing",
    "callUrl": "https://example.ru/contacts",
    "callTags": [{"category": "", "type": "AUTO-PR", "names": ["Целевой"]}],
    "orders": [{"orderId": 1, "completedAmount": 2800}],
    "yandexDirect": {"campaignId": 1, "adGroupId": 2, "adId": 3, "criteriaId": 4},
    "someObsoleteKey": {"x": 1},
}


def test_schema_is_fixed_even_for_no_calls():
    table = calls_to_table([])
    assert table.schema.equals(CALLS_SCHEMA)
    assert table.num_rows == 0
    assert table.schema.metadata[PHONES_HASHED_METADATA_KEY] == b"false"
    assert table.schema.names[: len(INT_FIELDS)] == list(INT_FIELDS)
    assert set(JSON_FIELDS) <= set(table.schema.names)
    assert table.schema.names[-1] == "phonesHashed"


def test_typed_values_from_a_realistic_record():
    row = calls_to_table([API_CALL]).to_pylist()[0]
    assert row["callId"] == 400001
    assert row["sessionId"] == 16441053  # number given as a string
    assert row["ctClientId"] == 640236  # integral float
    assert row["successful"] is True
    assert row["uniqueCall"] is True  # "True" string (hexeh's quirk)
    assert row["targetCall"] is False
    assert row["uniqTargetCall"] is True  # 1
    assert row["callbackCall"] is None
    assert row["date"] == "25/11/2024 10:00:00"
    assert row["utmSource"] == "<не указано>"
    assert row["phonesHashed"] is False
    assert json.loads(row["callTags"]) == API_CALL["callTags"]
    assert json.loads(row["yandexDirect"]) == API_CALL["yandexDirect"]
    assert row["comments"] is None and row["mapVisits"] is None
    assert "someObsoleteKey" not in row


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("callId", "12", 12),
        ("callId", " 12 ", 12),
        ("callId", "12.0", 12),
        ("callId", 12.5, None),
        ("callId", "abc", None),
        ("callId", 2**70, None),
        ("callId", True, None),
        ("callId", [1], None),
        ("duration", -5, -5),
        ("successful", "true", True),
        ("successful", "FALSE", False),
        ("successful", "0", False),
        ("successful", 0, False),
        ("successful", "maybe", None),
        ("successful", 2, None),
        ("callerNumber", 79991234567, "79991234567"),
        ("callerNumber", 7.9991234567e10, "79991234567"),
        ("yaClientId", True, "true"),
        ("yaClientId", float("nan"), None),
        ("yaClientId", {"a": 1}, '{"a":1}'),
    ],
)
def test_lenient_coercion(field, raw, expected):
    # a clean record first, so the column's fast path is tried and must fall back correctly
    table = calls_to_table([{"callId": 1, field: None}, {"callId": 2, field: raw}])
    assert table.column(field)[1].as_py() == expected


def test_aliases_and_letter_case():
    table = calls_to_table(
        [
            {"callId": 1, "guaClientId": "GA1.2.3", "CallTags": [{"names": ["a"]}], "CALLID": 9},
            {"callId": 2, "clientId": "canonical", "guaClientId": "ignored"},
        ]
    )
    rows = table.to_pylist()
    assert rows[0]["clientId"] == "GA1.2.3"
    assert json.loads(rows[0]["callTags"]) == [{"names": ["a"]}]
    assert rows[0]["callId"] == 1  # the canonical key wins over a case variant
    assert rows[1]["clientId"] == "canonical"


@pytest.mark.parametrize("item", [None, [], [1, 2], "str", 123, 1.5, True])
def test_non_mapping_record_becomes_a_malformed_row_not_an_error(item):
    """Issue 13 §2: one non-object item in a page must not fail the day (it used to raise TypeError)."""
    table = calls_to_table([{"callId": 1}, item, {"callId": 3}])
    assert table.num_rows == 3 and table.schema.equals(CALLS_SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert [r["callId"] for r in rows] == [1, None, 3]
    assert rows[0]["malformedRecord"] is None and rows[2]["malformedRecord"] is None
    assert json.loads(rows[1]["malformedRecord"]) == item
    assert all(v is None for k, v in rows[1].items() if k not in ("malformedRecord", "phonesHashed"))


def test_malformed_record_key_in_the_data_is_ignored():
    table = calls_to_table([{"callId": 1, "malformedRecord": "x", "MALFORMEDRECORD": "y"}])
    assert table.column("malformedRecord").to_pylist() == [None]


def test_identifier_float_beyond_2_53_keeps_its_exponent_form():
    """A JSON float such as 1.6900000001234567e18 lost digits: it must not read as an integer id."""
    table = calls_to_table(
        [{"callId": 1, "yaClientId": 1.6900000001234567e18}, {"callId": 2, "yaClientId": 7.0}]
    )
    assert table.column("yaClientId").to_pylist() == [repr(1.6900000001234567e18), "7"]


def test_hashing_removes_phone_numbers():
    records = [
        dict(API_CALL, callId=1, callerNumber="89991234567"),
        dict(API_CALL, callId=2, callerNumber="+7 (999) 123-45-67"),
        dict(API_CALL, callId=3, callerNumber=None),
    ]
    table = calls_to_table(records, hash_phone_numbers=True, phone_salt="pepper")
    callers = table.column("callerNumber").to_pylist()
    redirects = table.column("redirectNumber").to_pylist()
    for value in [*callers[:2], *redirects]:
        assert re.fullmatch(r"[0-9a-f]{64}", value)
        assert "9991234567" not in value and "7654321" not in value
    assert callers[0] == callers[1]  # same number, different shapes, same hash
    assert callers[2] is None
    assert table.column("phoneNumber").to_pylist()[0] == "74951234567"  # the tracked number is kept
    assert table.column("phonesHashed").to_pylist() == [True, True, True]
    assert table.schema.metadata[PHONES_HASHED_METADATA_KEY] == b"true"
    other_salt = calls_to_table(records, hash_phone_numbers=True, phone_salt="salt2")
    assert other_salt.column("callerNumber")[0].as_py() != callers[0]


def test_parquet_round_trip_keeps_schema(tmp_path):
    for records in ([], [API_CALL]):
        path = tmp_path / f"calls{len(records)}.parquet"
        pq.write_table(calls_to_table(records, hash_phone_numbers=True), path)
        back = pq.read_table(path)
        assert back.schema.equals(CALLS_SCHEMA)
        assert back.schema.metadata[PHONES_HASHED_METADATA_KEY] == b"true"
        assert conform_calls_table(back).equals(back)


def test_conform_fills_missing_columns_and_coerces_wrong_types():
    frame = pd.DataFrame(
        {"callId": ["1", "x"], "duration": [1.0, None], "successful": ["True", None], "extra": [1, 2]}
    )
    table = conform_calls_table(frame)
    assert table.schema.equals(CALLS_SCHEMA)
    assert table.column("callId").to_pylist() == [1, None]
    assert table.column("duration").to_pylist() == [1, None]
    assert table.column("successful").to_pylist() == [True, None]
    assert table.column("phonesHashed").to_pylist() == [False, False]
    assert "extra" not in table.column_names


def test_conform_pandas_round_trip_keeps_hash_flag():
    table = calls_to_table([API_CALL], hash_phone_numbers=True, phone_salt="s")
    back = conform_calls_table(table.to_pandas())
    assert back.column("phonesHashed").to_pylist() == [True]
    assert back.schema.metadata[PHONES_HASHED_METADATA_KEY] == b"true"


_ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["true", "True", "0", "1", "12.0", "79991234567", "<не указано>", ""]),
)
_ANY_VALUE = st.one_of(
    _ANY_SCALAR,
    st.lists(_ANY_SCALAR, max_size=3),
    st.dictionaries(st.text(max_size=5), _ANY_SCALAR, max_size=3),
)
_KEYS = st.sampled_from([*INT_FIELDS, *BOOL_FIELDS, *STRING_FIELDS, *JSON_FIELDS, "unknown", "CALLTAGS"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(_KEYS, _ANY_VALUE, max_size=12), max_size=8),
    st.booleans(),
)
def test_any_record_gives_the_fixed_schema(records, hashed):
    table = calls_to_table(records, hash_phone_numbers=hashed, phone_salt="s")
    assert table.schema.equals(CALLS_SCHEMA)
    assert table.num_rows == len(records)
    for column in JSON_FIELDS:
        for value in table.column(column).to_pylist():
            assert value is None or isinstance(json.loads(value), object)
    if hashed:
        for value in table.column("callerNumber").to_pylist():
            assert value is None or re.fullmatch(r"[0-9a-f]{64}", value)
    assert pa.Table.from_pylist(table.to_pylist(), schema=CALLS_SCHEMA).num_rows == len(records)


def test_conform_mixed_object_columns_go_value_by_value():
    frame = pd.DataFrame(
        {
            "callId": [1, "2", None],
            "yaClientId": [123, "abc", float("nan")],
            "callTags": [[{"names": ["a"]}], None, "raw text"],
            "phonesHashed": [None, None, None],
        }
    )
    table = conform_calls_table(frame)
    assert table.schema.equals(CALLS_SCHEMA)
    assert table.column("callId").to_pylist() == [1, 2, None]
    assert table.column("yaClientId").to_pylist() == ["123", "abc", None]
    assert table.column("callTags").to_pylist() == ['[{"names":["a"]}]', None, "raw text"]
    assert table.column("phonesHashed").to_pylist() == [False, False, False]


# ------------------------------------------------------------------ issue 13 §2 findings (items 4, 5, 9)


def _write_and_read(table: pa.Table) -> pa.Table:
    import io

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    return pq.read_table(buffer)


@pytest.mark.parametrize("field", ["city", "url", "yaClientId", "callTags", "orders", "comments", "date"])
def test_lone_surrogates_become_replacement_characters_and_parquet_is_written(field):
    """Before: pq.write_table raised UnicodeEncodeError (surrogates not allowed) and the day failed."""
    value = ["a\ud800b"] if field in JSON_FIELDS else "a\ud800b"
    table = _write_and_read(calls_to_table([{**API_CALL, field: value}, {**API_CALL, "callId": 2}]))
    assert table.num_rows == 2
    assert "a\ufffdb" in table.column(field)[0].as_py()


def test_a_lone_surrogate_in_a_malformed_item_or_a_nested_key_is_stored():
    table = _write_and_read(calls_to_table(["\udc00", {**API_CALL, "orders": [{"\ud800": 1}]}]))
    assert table.column("malformedRecord")[0].as_py() == '"\ufffd"'
    assert json.loads(table.column("orders")[1].as_py()) == [{"\ufffd": 1}]


def test_a_valid_pair_is_kept_whole():
    table = calls_to_table([{**API_CALL, "city": "\ud83d\ude00 \U0001f600"}])
    assert table.column("city")[0].as_py() == "\U0001f600 \U0001f600"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1.2345678901234567e18, None),  # beyond 2^53: digits lost
        (float(2**53), 2**53),
        ("１２３", None),
        ("1_000", None),
        ("1e3", None),
        ("+5", None),
        (-5, -5),  # an integer: kept, the transform rejects it (not positive)
        ("-5", None),
        ("7", 7),
        ("7.0", 7),
    ],
)
def test_call_id_is_typed_only_when_exact(raw, expected):
    table = calls_to_table([{"callId": 1}, {"callId": raw}])
    assert table.column("callId")[1].as_py() == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("1_000", None), ("１２", None), ("1e3", None), (2.0**60, None)]
)
def test_other_integer_fields_refuse_lookalikes_too(raw, expected):
    table = calls_to_table([{"callId": 1, "timestamp": None}, {"callId": 2, "timestamp": raw}])
    assert table.column("timestamp")[1].as_py() == expected


def test_invalid_fields_names_every_value_that_could_not_be_typed():
    table = calls_to_table(
        [
            {"callId": 1, "duration": 5},
            {"callId": 2, "duration": 10**30, "waitingConnect": "abc", "successful": "maybe"},
            {"callId": 3, "duration": None},
            {"callId": "1e3", "duration": 30.7},
        ]
    )
    assert table.column(INVALID_FIELDS_FIELD).to_pylist() == [
        None,
        "duration,waitingConnect,successful",
        None,
        "callId,duration",
    ]
    assert CALLS_SCHEMA.names[-2:] == [INVALID_FIELDS_FIELD, "phonesHashed"]


def test_conform_does_not_cast_an_inexact_float_call_id():
    """A float column (pandas with NaN) holding 1.2345678901234567e18 casts 'safely' to a wrong integer."""
    frame = pd.DataFrame({"callId": [1.2345678901234567e18, 5.0, float("nan")]})
    assert conform_calls_table(frame).column("callId").to_pylist() == [None, 5, None]
