"""Issue 13 §2: values that used to slip through the call transform, each rejected or cleaned.

Each example failed before the fix (uploaded as a different visitor, rolled over to another day,
written raw into the CSV, or failing the whole day).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from calltouch_metrika.transforms.call_values import MAX_TAG_CHARS, MAX_URL_CHARS
from calltouch_metrika.transforms.calls import REASONS, TransformOptions, calls_to_metrika, metrika_csv_bytes
from calltouch_metrika.transforms.records import calls_to_table
from tests.transforms.test_calls import NOW, call, one_row, parse_csv, rejected_reason, run

# ------------------------------------------------------------------ identifiers


@pytest.mark.parametrize(
    "value",
    [
        1.6900000001234567e18,  # a JSON float: digits lost, must not become "1690000000123456768"
        "1.6900000001234567e18",
        2.0**64,
        "99999999999999999999",  # 20 digits but above 2^64-1
        18446744073709551616,  # 2^64 as a JSON integer
        "18446744073709551616",
        "-1",
    ],
)
def test_client_id_not_exactly_an_unsigned_64_bit_integer_is_invalid(value: Any) -> None:
    assert rejected_reason(call(yaClientId=value)) == "invalid_identifier"


@pytest.mark.parametrize("identifier", ["ClientId", "Yclid"])
def test_the_largest_uint64_and_exact_floats_are_still_accepted(identifier: str) -> None:
    field = "yaClientId"
    assert (
        one_row(call(yaClientId="18446744073709551615"), identifier=identifier, identifier_field=field)[
            identifier
        ]
        == "18446744073709551615"
    )
    assert one_row(call(yaClientId=12345.0), identifier=identifier)[identifier] == "12345"


def test_invalid_identifier_detail_says_why() -> None:
    result = run([call(yaClientId="99999999999999999999")])
    assert "unsigned 64-bit" in result.rejects["detail"].iloc[0]


# ------------------------------------------------------------------ impossible dates


@pytest.mark.parametrize(
    ("date", "now"),
    [
        ("31/11/2026 10:00:00", datetime(2026, 12, 5, tzinfo=UTC)),  # rolled over to 1 December
        ("30/02/2026 10:00:00", datetime(2026, 3, 5, tzinfo=UTC)),
        ("24/11/2024 24:00:00", NOW),  # rolled over to 25/11 00:00
        ("25/11/2024 10:60:00", NOW),
    ],
)
def test_impossible_date_without_timestamp_is_invalid_timestamp(date: str, now: datetime) -> None:
    table = calls_to_table([call(timestamp=..., date=date)])
    result = calls_to_metrika(table, TransformOptions(site_id=1), now=now)
    assert result.counts.uploaded == 0
    assert result.rejects["reason"].tolist() == ["invalid_timestamp"]


def test_real_dates_still_parse() -> None:
    row = one_row(call(timestamp=..., date="25/11/2024 10:00:00"))
    assert row["DateTime"] == 1732518000
    row = one_row(call(timestamp=..., date="5/11/2024 9:05:00"), linkage_window_days=30)
    assert row["DateTime"] == 1730786700


# ------------------------------------------------------------------ control characters, lengths


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u202e", "\u2066", "\u200f"])
def test_control_and_bidi_characters_are_removed_from_tag_and_url(bad: str) -> None:
    record = call(
        callTags=[{"names": [f"Цел{bad}евой", bad]}],
        callUrl=f"https://example.ru/{bad}contacts",
    )
    data = metrika_csv_bytes(run([record]).upload)
    assert bad.encode() not in data
    rows = parse_csv(data)
    header = rows[0]
    assert rows[1][header.index("Tag")] == "Целевой"
    assert rows[1][header.index("URL")] == "https://example.ru/contacts"


def test_line_breaks_in_a_tag_are_kept_but_not_in_a_url() -> None:
    rows = parse_csv(
        metrika_csv_bytes(run([call(callTags=[{"names": ["a\nb"]}], callUrl="https://e.ru/\n")]).upload)
    )
    assert rows[1][rows[0].index("Tag")] == "a\nb"
    assert rows[1][rows[0].index("URL")] == "https://e.ru/"


def test_long_tag_is_cut_and_long_url_dropped_but_the_call_uploaded() -> None:
    record = call(
        callTags=[{"names": ["т" * 100_000]}], callUrl="https://e.ru/" + "a" * 100_000, url="https://e.ru/ok"
    )
    row = one_row(record)
    assert row["Tag"] == "т" * MAX_TAG_CHARS
    assert row["URL"] == "https://e.ru/ok"  # callUrl dropped, the fallback url used
    row = one_row(call(callUrl=None, url="https://e.ru/" + "a" * MAX_URL_CHARS))
    assert row["URL"] is None or row["URL"] != row["URL"]  # NA: left empty
    data = metrika_csv_bytes(run([record]).upload)
    assert len(data) < 5_000


def test_a_url_of_exactly_the_cap_is_kept() -> None:
    url = "https://e.ru/" + "a" * (MAX_URL_CHARS - len("https://e.ru/"))
    assert one_row(call(callUrl=url))["URL"] == url


# ------------------------------------------------------------------ non-object items in a page


@pytest.mark.parametrize("item", [None, [], "str", 123])
def test_a_non_object_item_is_rejected_and_the_rest_uploaded(item: Any) -> None:
    result = run([call(1), item, call(2)])
    assert result.counts.extracted == 3
    assert result.counts.uploaded == 2 and result.upload_call_ids == [1, 2]
    assert result.counts.rejects_by_reason == {"malformed_record": 1}
    reject = result.rejects.iloc[0]
    assert reject["reason"] == "malformed_record"
    assert "not a JSON object" in reject["detail"]
    assert "malformed_record" in REASONS
