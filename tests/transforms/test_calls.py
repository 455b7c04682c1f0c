"""calls_to_metrika / write_metrika_csv: every column, every reason code, the CSV bytes."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from calltouch_metrika.transforms.calls import (
    DEFAULT_CALL_TRACKER_URL_TEMPLATE,
    REASONS,
    REJECTS_COLUMNS,
    CallsCounts,
    ReconciliationError,
    TransformOptions,
    calls_to_metrika,
    metrika_client_id_type,
    metrika_csv_bytes,
    upload_columns,
    write_metrika_csv,
)
from calltouch_metrika.transforms.calls_stream import stream_calls_to_metrika_csv
from calltouch_metrika.transforms.records import calls_to_table

NOW = datetime(2024, 11, 26, 0, 0, tzinfo=UTC)
TS = 1732518000  # 2024-11-25 07:00:00 UTC = 25/11/2024 10:00:00 in Moscow
SITE = 10001
SEED_000_ORDER = [
    "DateTime", "StaticCall", "Price", "Currency", "PhoneNumber", "TalkDuration", "HoldDuration",
    "CallMissed", "Tag", "FirstTimeCaller", "URL", "CallTrackerURL",
]  # fmt: skip


def call(call_id: int = 1, **overrides: Any) -> dict[str, Any]:
    """A well-formed Calltouch call; ``overrides`` replace (or with value ``...`` remove) keys."""
    record: dict[str, Any] = {
        "callId": call_id,
        "timestamp": TS,
        "date": "25/11/2024 10:00:00",
        "yaClientId": "1554382259123456789",
        "duration": 120,
        "waitingConnect": 7,
        "successful": True,
        "uniqueCall": True,
        "callerNumber": "79991234567",
        "sessionId": 16441053,
        "ctClientId": 640236,
        "url": "https://example.ru/landing",
        "callUrl": "https://example.ru/contacts",
        "callTags": [{"category": "", "type": "MANUAL", "names": ["Целевой"]}],
    }
    for key, value in overrides.items():
        if value is ...:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def run(records: list[dict[str, Any]], **options: Any):
    opts = TransformOptions(site_id=options.pop("site_id", SITE), **options)
    return calls_to_metrika(calls_to_table(records), opts, now=NOW)


def one_row(record: dict[str, Any], **options: Any) -> dict[str, Any]:
    result = run([record], **options)
    assert result.counts.uploaded == 1, result.rejects.to_dict("records")
    return result.upload.iloc[0].to_dict()


def rejected_reason(record: dict[str, Any], **options: Any) -> str:
    result = run([record], **options)
    assert result.counts.rejected == 1, "expected a reject"
    return result.rejects["reason"].iloc[0]


def parse_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# ------------------------------------------------------------------ golden CSV


def test_golden_csv_bytes():
    records = [
        call(1),
        call(
            2,
            yaClientId=" 1700000000000000002 ",
            timestamp=TS + 60,
            date="25/11/2024 10:01:00",
            successful=False,
            uniqueCall=False,
            duration=0,
            waitingConnect=31,
            callerNumber="8 (495) 123-45-67",
            sessionId=None,
            ctClientId=None,
            callUrl=None,
            callTags=[{"names": ['Продажа, "VIP"', "спам"]}, {"names": ["спам"]}],
        ),
        call(3, yaClientId=None),  # rejected: no identifier
    ]
    result = run(records, price_mode="fixed", price=Decimal("1500"))
    assert result.counts.as_dict() == {
        "extracted": 3,
        "uploaded": 2,
        "rejected": 1,
        "rejects_by_reason": {"missing_identifier": 1},
    }
    expected = (
        "ClientId,DateTime,StaticCall,Price,Currency,PhoneNumber,TalkDuration,HoldDuration,CallMissed,Tag,"
        "FirstTimeCaller,URL,CallTrackerURL\n"
        '"1554382259123456789",1732518000,0,1500.00,"RUB","+79991234567",120,7,0,"Целевой",1,'
        '"https://example.ru/contacts","https://my.calltouch.ru/accounts/10001/calls-log?callId=1"\n'
        '"1700000000000000002",1732518060,1,1500.00,"RUB","+74951234567",0,31,1,"Продажа, ""VIP"", спам",0,'
        '"https://example.ru/landing","https://my.calltouch.ru/accounts/10001/calls-log?callId=2"\n'
    ).encode()
    assert metrika_csv_bytes(result.upload) == expected
    assert result.upload_call_ids == [1, 2]


def test_header_order_follows_seed_000():
    for identifier, field in (("ClientId", "yaClientId"), ("UserId", "clientId"), ("Yclid", "url?yclid")):
        opts = TransformOptions(site_id=SITE, identifier=identifier, identifier_field=field)
        assert upload_columns(opts) == [
            identifier,
            *[c for c in SEED_000_ORDER if c not in ("Price", "Currency")],
        ]
        priced = TransformOptions(
            site_id=SITE, identifier=identifier, identifier_field=field, price_mode="orders"
        )
        assert upload_columns(priced) == [identifier, *SEED_000_ORDER]


def test_empty_input_gives_header_only():
    result = run([])
    assert result.counts.as_dict()["extracted"] == 0
    assert list(result.upload.columns) == upload_columns(TransformOptions(site_id=SITE))
    assert list(result.rejects.columns) == list(REJECTS_COLUMNS)
    assert metrika_csv_bytes(result.upload) == (
        b"ClientId,DateTime,StaticCall,PhoneNumber,TalkDuration,HoldDuration,CallMissed,Tag,"
        b"FirstTimeCaller,URL,CallTrackerURL\n"
    )


# ------------------------------------------------------------------ columns


def test_identifier_variants():
    assert one_row(call(yaClientId="  123  "))["ClientId"] == "123"
    user = one_row(call(clientId="crm-42"), identifier="UserId", identifier_field="clientId")
    assert user["UserId"] == "crm-42"
    user_int = one_row(call(ctClientId=640236), identifier="UserId", identifier_field="ctClientId")
    assert user_int["UserId"] == "640236"
    yclid = one_row(
        call(url="https://example.ru/?utm_source=ya&yclid=7654321&x=1"),
        identifier="Yclid",
        identifier_field="url?yclid",
    )
    assert yclid["Yclid"] == "7654321"
    assert metrika_client_id_type("ClientId") == "CLIENT_ID"
    assert metrika_client_id_type("UserId") == "USER_ID"
    assert metrika_client_id_type("Yclid") == "YCLID"
    with pytest.raises(ValueError, match="identifier must be one of"):
        metrika_client_id_type("Email")


def test_datetime_sources():
    assert one_row(call())["DateTime"] == TS
    assert one_row(call(timestamp=TS * 1000 + 999))["DateTime"] == TS  # milliseconds
    assert one_row(call(timestamp=str(TS)))["DateTime"] == TS
    # no timestamp: date read in the site's time zone
    assert one_row(call(timestamp=None))["DateTime"] == TS
    assert one_row(call(timestamp=..., date="25/11/2024 07:00:00"), site_timezone="UTC")["DateTime"] == TS
    # an unparseable date does not block a good timestamp
    assert one_row(call(date="yesterday"))["DateTime"] == TS
    # within the tolerance
    assert one_row(call(timestamp=TS + 59))["DateTime"] == TS + 59


def test_static_call():
    assert one_row(call())["StaticCall"] == 0
    assert one_row(call(sessionId=None, ctClientId=None))["StaticCall"] == 1
    assert one_row(call(sessionId=0, ctClientId=...))["StaticCall"] == 1
    assert one_row(call(sessionId=None, ctClientId=5))["StaticCall"] == 0
    assert one_row(call(sessionId=5, ctClientId=None))["StaticCall"] == 0


def test_price_modes():
    assert "Price" not in one_row(call())
    fixed = one_row(call(), price_mode="fixed", price="99.999", currency="USD")
    assert fixed["Price"] == Decimal("100.00") and fixed["Currency"] == "USD"
    orders = [
        {"orderId": 1, "completedAmount": "2800.0000", "plannedAmount": 5000},
        {"orderId": 2, "completedAmount": None, "plannedAmount": 100.5},
        {"orderId": 3},
        {"orderId": 4, "realSum": "10"},
    ]
    assert one_row(call(orders=orders), price_mode="orders")["Price"] == Decimal("2910.50")
    no_orders = one_row(call(orders=[]), price_mode="orders")
    assert pd.isna(no_orders["Price"]) and pd.isna(no_orders["Currency"])
    csv_rows = parse_csv(
        metrika_csv_bytes(run([call(1, orders=orders), call(2)], price_mode="orders").upload)
    )
    assert [row[3:5] for row in csv_rows[1:]] == [["2910.50", "RUB"], ["", ""]]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("79991234567", "+79991234567"),
        ("89991234567", "+79991234567"),
        ("+7 (999) 123-45-67", "+79991234567"),
        ("9991234567", "+79991234567"),
        (79991234567, "+79991234567"),
        ("375291234567", "+375291234567"),
        ("+1 650 253 0000", "+16502530000"),
        ("8 (495) 123-45-67", "+74951234567"),
        ("12345", None),
        ("anonymous", None),
        ("", None),
        (None, None),
    ],
)
def test_phone_number(raw, expected):
    value = one_row(call(callerNumber=raw))["PhoneNumber"]
    assert (None if pd.isna(value) else value) == expected


def test_hashed_phones_give_no_phone_number():
    table = calls_to_table([call()], hash_phone_numbers=True, phone_salt="s")
    result = calls_to_metrika(table, TransformOptions(site_id=SITE), now=NOW)
    assert result.counts.uploaded == 1
    assert pd.isna(result.upload["PhoneNumber"].iloc[0])
    # the same through pandas (the flag travels as a column)
    result = calls_to_metrika(table.to_pandas(), TransformOptions(site_id=SITE), now=NOW)
    assert pd.isna(result.upload["PhoneNumber"].iloc[0])


def test_durations_flags_and_missing_optional_values():
    row = one_row(call(duration=0, waitingConnect=45, successful="false", uniqueCall="False"))
    assert (row["TalkDuration"], row["HoldDuration"], row["CallMissed"], row["FirstTimeCaller"]) == (
        0,
        45,
        1,
        0,
    )
    row = one_row(call(duration=..., waitingConnect=None, successful=..., uniqueCall="?"))
    assert all(pd.isna(row[c]) for c in ("TalkDuration", "HoldDuration", "CallMissed", "FirstTimeCaller"))
    data = metrika_csv_bytes(run([call(duration=..., successful=...)]).upload)
    assert parse_csv(data)[1][3:7] == ["+79991234567", "", "7", ""]


def test_tags():
    tags = [
        {"category": "c", "type": "AUTO-PR", "names": ["b", " a ", ""]},
        {"type": "MANUAL", "names": ["a", "c"]},
        {"names": None},
        "bare",
        42,
    ]
    assert one_row(call(callTags=tags))["Tag"] == "b, a, c, bare"
    assert pd.isna(one_row(call(callTags=tags), include_tags=False)["Tag"])
    assert pd.isna(one_row(call(callTags=[]))["Tag"])
    # a plain string is one tag name (JSON text of tag groups and unusable shapes: test_calls_bad_values)
    assert one_row(call(callTags="not json ["))["Tag"] == "not json ["


def test_url_and_call_tracker_url():
    assert one_row(call())["URL"] == "https://example.ru/contacts"
    assert one_row(call(callUrl="  "))["URL"] == "https://example.ru/landing"
    assert pd.isna(one_row(call(callUrl=None, url=None))["URL"])
    assert one_row(call(77))["CallTrackerURL"] == DEFAULT_CALL_TRACKER_URL_TEMPLATE.format(
        site_id=SITE, call_id=77
    )
    custom = one_row(call(77), call_tracker_url_template="https://ct.example/{site_id}/{call_id}#{call_id}")
    assert custom["CallTrackerURL"] == "https://ct.example/10001/77#77"
    assert pd.isna(one_row(call(), call_tracker_url_template="")["CallTrackerURL"])


# ------------------------------------------------------------------ reasons


@pytest.mark.parametrize(
    ("record", "options", "reason"),
    [
        (call(callId=None), {}, "invalid_call_id"),
        (call(callId="x1"), {}, "invalid_call_id"),
        (call(yaClientId=None), {}, "missing_identifier"),
        (call(yaClientId="   "), {}, "missing_identifier"),
        (call(yaClientId="<не указано>"), {}, "missing_identifier"),
        (call(yaClientId="null"), {}, "missing_identifier"),
        (call(yaClientId="12ab"), {}, "invalid_identifier"),
        (
            call(clientId="a\nb"),
            {"identifier": "UserId", "identifier_field": "clientId"},
            "invalid_identifier",
        ),
        (
            call(clientId="x" * 256),
            {"identifier": "UserId", "identifier_field": "clientId"},
            "invalid_identifier",
        ),
        (
            call(url="https://e.ru/?a=1"),
            {"identifier": "Yclid", "identifier_field": "url?yclid"},
            "missing_identifier",
        ),
        (call(timestamp=None, date=None), {}, "invalid_timestamp"),
        (call(timestamp="soon", date="32/13/2024 99:00:00"), {}, "invalid_timestamp"),
        (call(timestamp=-5, date=...), {}, "invalid_timestamp"),
        (call(timestamp=TS + 3600), {}, "datetime_mismatch"),
        (call(date="25/11/2024 10:00:00"), {"site_timezone": "Asia/Yekaterinburg"}, "datetime_mismatch"),
        (call(timestamp=int(NOW.timestamp()) + 1, date=...), {}, "future_datetime"),
        (call(timestamp=None, date="26/11/2024 03:00:01"), {}, "future_datetime"),
        (
            call(timestamp=int((NOW - timedelta(days=21)).timestamp()) - 1, date=...),
            {},
            "outside_linkage_window",
        ),
        (call(timestamp=TS - 4 * 86400, date=...), {"linkage_window_days": 3}, "outside_linkage_window"),
        (call(duration=-1), {}, "negative_duration"),
        (call(waitingConnect="-3"), {}, "negative_duration"),
        (call(orders=[{"completedAmount": "abc"}]), {"price_mode": "orders"}, "invalid_price"),
        (call(orders=[{"plannedAmount": -1}]), {"price_mode": "orders"}, "invalid_price"),
        (call(orders=[{"completedAmount": "1e16"}]), {"price_mode": "orders"}, "invalid_price"),
        (call(orders=[{"completedAmount": "NaN"}]), {"price_mode": "orders"}, "invalid_price"),
    ],
)
def test_reason_codes(record, options, reason):
    assert reason in REASONS
    assert rejected_reason(record, **options) == reason


def test_window_edges_are_inclusive():
    now_ts = int(NOW.timestamp())
    assert one_row(call(timestamp=now_ts, date=...))["DateTime"] == now_ts
    oldest = now_ts - 21 * 86400
    assert one_row(call(timestamp=oldest, date=...))["DateTime"] == oldest


def test_duplicates_keep_the_first_and_first_reason_wins():
    result = run([call(5, duration=10), call(5, duration=20), call(6, yaClientId=None, duration=-1), call(5)])
    assert result.upload_call_ids == [5]
    assert result.upload["TalkDuration"].tolist() == [10]
    assert result.rejects[["callId", "reason"]].values.tolist() == [
        [5, "duplicate_call"],
        [6, "missing_identifier"],  # before negative_duration in the order of reasons
        [5, "duplicate_call"],
    ]
    assert result.counts.rejects_by_reason == {"duplicate_call": 2, "missing_identifier": 1}


def test_rejects_keep_raw_identifying_fields():
    result = run([call(9, yaClientId="12ab", callerNumber="89991234567", timestamp=TS)])
    reject = result.rejects.iloc[0].to_dict()
    assert set(reject) == set(REJECTS_COLUMNS)
    assert reject["callId"] == 9 and reject["identifier"] == "12ab" and reject["timestamp"] == TS
    assert reject["callerNumber"] == "89991234567" and reject["date"] == "25/11/2024 10:00:00"
    assert "12ab" in reject["detail"]
    mismatch = run([call(timestamp=TS + 3 * 3600)]).rejects.iloc[0]
    assert "+3.00 h" in mismatch["detail"] and "Europe/Moscow" in mismatch["detail"]


def test_counts_must_reconcile():
    with pytest.raises(ReconciliationError, match="extracted 3 != uploaded 1 \\+ rejected 1"):
        CallsCounts(extracted=3, uploaded=1, rejected=1, rejects_by_reason={"duplicate_call": 1})
    with pytest.raises(ReconciliationError, match="do not add up"):
        CallsCounts(extracted=2, uploaded=1, rejected=1, rejects_by_reason={})
    assert "extracted=2 uploaded=1 rejected=1" in CallsCounts(2, 1, 1, {"x": 1}).summary()


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        calls_to_metrika(calls_to_table([call()]), TransformOptions(site_id=SITE), now=datetime(2024, 11, 26))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"identifier": "Email"}, "identifier must be one of"),
        ({"identifier_field": "nope"}, "not a calls column"),
        ({"identifier_field": "url?bad param"}, "bad query parameter"),
        ({"price_mode": "sometimes"}, "price_mode must be one of"),
        ({"price_mode": "fixed"}, "needs a non-negative price"),
        ({"price_mode": "fixed", "price": "-1"}, "needs a non-negative price"),
        ({"currency": "rub"}, "ISO 4217"),
        ({"site_timezone": "Mars/Olympus"}, "IANA"),
        ({"call_tracker_url_template": "https://x/{account}"}, "may only use"),
        ({"linkage_window_days": 0}, "positive integer"),
        ({"site_id": "10001"}, "site_id must be an integer"),
    ],
)
def test_options_are_validated(kwargs, message):
    kwargs.setdefault("site_id", SITE)
    with pytest.raises(ValueError, match=message):
        TransformOptions(**kwargs)


# ------------------------------------------------------------------ CSV writing


def test_tag_quoting_survives_a_csv_parser():
    nasty = 'Продажа, "VIP"\nвторая строка'
    result = run(
        [call(1, callTags=[{"names": [nasty, "a,b", 'q"']}]), call(2, callUrl='https://e.ru/?a="1",b')]
    )
    data = metrika_csv_bytes(result.upload)
    rows = parse_csv(data)
    header = rows[0]
    assert len(rows) == 3 and all(len(r) == len(header) for r in rows)
    tag = header.index("Tag")
    assert rows[1][tag] == f'{nasty}, a,b, q"'
    assert rows[2][header.index("URL")] == 'https://e.ru/?a="1",b'
    assert data.decode("utf-8")  # UTF-8, Cyrillic intact


def test_write_to_a_file_returns_bytes_written_and_never_opens_a_path(tmp_path):
    result = run([call(1), call(2)])
    path = tmp_path / "calls.csv"
    with path.open("wb") as fh:
        written = write_metrika_csv(result.upload, fh)
    assert written == path.stat().st_size > 0
    buffer = io.BytesIO()
    assert write_metrika_csv(result.upload, buffer) == written
    assert not buffer.closed
    assert buffer.getvalue() == path.read_bytes()
    for not_a_file in (path, str(path)):  # a transform performs no I/O of its own
        with pytest.raises(TypeError, match="binary file object"):
            write_metrika_csv(result.upload, not_a_file)


def test_write_accepts_plain_pandas_frames_without_float_artefacts():
    frame = pd.DataFrame(
        {
            "UserId": ["u1", "u2"],
            "DateTime": [1732518000.0, 1732518060.0],
            "TalkDuration": [12.0, float("nan")],
            "Price": [10.5, None],
            "Currency": ["RUB", None],
        }
    )
    assert metrika_csv_bytes(frame) == (
        b'UserId,DateTime,TalkDuration,Price,Currency\n"u1",1732518000,12,10.50,"RUB"\n"u2",1732518060,,,\n'
    )


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"ClientId": ["1"], "DateTime": [1], "Bogus": [1]}), "not Metrika calls CSV columns"),
        (pd.DataFrame({"DateTime": [1]}), "exactly one identifier"),
        (pd.DataFrame({"ClientId": ["1"], "UserId": ["1"], "DateTime": [1]}), "exactly one identifier"),
        (pd.DataFrame({"ClientId": ["1"], "DateTime": [1.5]}), "column DateTime cannot be written"),
        (pd.DataFrame({"ClientId": [1], "DateTime": [1]}), "column ClientId must hold text"),
    ],
)
def test_write_rejects_bad_frames(frame, message):
    with pytest.raises(ValueError, match=message):
        metrika_csv_bytes(frame)


def test_streaming_by_batches_matches_the_whole(tmp_path):
    records = [call(i, yaClientId=str(1000 + i) if i % 3 else None, duration=i) for i in range(1, 40)]
    records += [call(5), call(7, timestamp=TS + 7200)]  # duplicates of ids from an earlier batch
    table = calls_to_table(records)
    options = TransformOptions(site_id=SITE, price_mode="fixed", price=1)
    whole = calls_to_metrika(table, options, now=NOW)
    expected = metrika_csv_bytes(whole.upload)
    batches = table.to_batches(max_chunksize=8)
    assert len(batches) > 3
    buffer = io.BytesIO()
    streamed = stream_calls_to_metrika_csv(batches, options, now=NOW, sink=buffer)
    assert buffer.getvalue() == expected
    assert streamed.bytes_written == len(expected)
    assert streamed.counts == whole.counts
    assert streamed.counts.rejects_by_reason["duplicate_call"] == 2
    pd.testing.assert_frame_equal(streamed.rejects, whole.rejects)
    with (tmp_path / "empty.csv").open("wb") as fh:
        empty = stream_calls_to_metrika_csv([], options, now=NOW, sink=fh)
    assert (tmp_path / "empty.csv").read_bytes() == expected.split(b"\n")[0] + b"\n"
    assert empty.counts.extracted == 0


def test_dataframe_and_partial_input_are_accepted():
    table = calls_to_table([call(1), call(2, yaClientId=None)])
    from_table = calls_to_metrika(table, TransformOptions(site_id=SITE), now=NOW)
    from_frame = calls_to_metrika(table.to_pandas(), TransformOptions(site_id=SITE), now=NOW)
    pd.testing.assert_frame_equal(from_table.upload, from_frame.upload)
    assert from_table.counts == from_frame.counts
    partial = pa.table({"callId": [1], "timestamp": [TS], "yaClientId": ["42"]})
    row = calls_to_metrika(partial, TransformOptions(site_id=SITE), now=NOW).upload.iloc[0]
    assert row["ClientId"] == "42" and row["StaticCall"] == 1 and pd.isna(row["PhoneNumber"])


def test_transforms_do_not_import_airflow():
    code = (
        "import sys\n"
        "import calltouch_metrika.transforms.calls, calltouch_metrika.transforms.records\n"
        "import calltouch_metrika.transforms.calls_stream, calltouch_metrika.transforms.metrika_csv\n"
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_phone_library_runs_once_per_distinct_number(monkeypatch):
    """Perf-notes: the common Russian shapes never reach phonenumbers; the rest once per distinct value."""
    import phonenumbers

    from calltouch_metrika.transforms import phones

    seen: list[str] = []
    real_parse = phonenumbers.parse

    def counting_parse(number, region=None, *args, **kwargs):
        seen.append(number)
        return real_parse(number, region, *args, **kwargs)

    monkeypatch.setattr(phones.phonenumbers, "parse", counting_parse)
    values = ["79991234567", "89991234567", "+7 (999) 123-45-67", "9991234567"] * 50
    values += ["+1 650 253 0000"] * 100 + ["4951234567"] * 100 + [None, ""] * 10
    result = phones.normalize_phones(pd.Series(values, index=range(1000, 1000 + len(values))))
    assert list(result.index) == list(range(1000, 1000 + len(values)))
    assert result.iloc[:200].tolist() == ["+79991234567"] * 200
    assert set(result.iloc[200:300]) == {"+16502530000"} and set(result.iloc[300:400]) == {"+74951234567"}
    assert result.iloc[400:].isna().all()
    assert sorted(set(seen)) == sorted(set(seen) & {"+1 650 253 0000", "4951234567", "+4951234567"})
    assert seen.count("+1 650 253 0000") == 1 and seen.count("4951234567") == 1


def test_repeated_local_hour_accepts_either_reading():
    """At a DST end the local hour repeats; a date in it matches either of two timestamps."""
    now = datetime(2024, 11, 10, tzinfo=UTC)
    first = int(datetime(2024, 11, 3, 5, 30, tzinfo=UTC).timestamp())  # 01:30 EDT
    second = first + 3600  # 01:30 EST
    records = [
        call(1, timestamp=first, date="03/11/2024 01:30:00"),
        call(2, timestamp=second, date="03/11/2024 01:30:00"),
    ]
    result = calls_to_metrika(
        calls_to_table(records), TransformOptions(site_id=SITE, site_timezone="America/New_York"), now=now
    )
    assert result.upload["DateTime"].tolist() == [first, second]


def test_missing_call_ids_do_not_make_call_id_zero_a_duplicate() -> None:
    """Regression (found by Hypothesis): invalid callIds once counted as an earlier callId 0."""
    result = run([call(call_id=...), call(call_id=...), call(call_id=0), call(call_id=5)])
    assert result.counts.rejects_by_reason == {"invalid_call_id": 3}  # 0 is not a callId either
    assert result.upload_call_ids == [5]


def test_an_order_amount_too_large_for_a_price_is_rejected_not_raised() -> None:
    """Regression (found by Hypothesis): 1e+26 overflowed Decimal.quantize."""
    assert rejected_reason(call(orders=[{"completedAmount": 1e26}]), price_mode="orders") == "invalid_price"
