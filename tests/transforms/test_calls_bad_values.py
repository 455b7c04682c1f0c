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


# ------------------------------------------------------------------ findings of the 07:40 probe
# (issue 13 §2, /work/wt/findings.md items 4, 5, 9): each example failed before its fix.


def _through_parquet(records: list[Any]) -> Any:
    """What the extract then the upload task do: calls_to_table -> Parquet -> calls_to_metrika."""
    import io

    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(calls_to_table(records), buffer)
    buffer.seek(0)
    return calls_to_metrika(pq.read_table(buffer), TransformOptions(site_id=10001), now=NOW)


@pytest.mark.parametrize(
    "overrides",
    [
        {"callTags": [{"names": ["a\ud800b"]}]},
        {"callUrl": "https://x/\udc00"},
        {"city": "\ud800"},
        {"callerNumber": "\udfff"},
        {"orders": [{"\ud800key": "v"}]},
        {"callId": 1, "yaClientId": "17320000001234\ud800"},
    ],
)
def test_a_lone_surrogate_anywhere_never_fails_the_day(overrides: dict[str, Any]) -> None:
    """JSON "\\ud800" decodes to a str UTF-8 cannot encode: it becomes U+FFFD, the day goes on."""
    result = _through_parquet([call(1, **overrides), call(2)])
    assert result.counts.extracted == 2
    assert 2 in result.upload_call_ids
    data = metrika_csv_bytes(result.upload)
    data.decode("utf-8")  # valid UTF-8 throughout
    if "callTags" in overrides:
        assert "a\ufffdb" in data.decode()
    if "url" in overrides:
        assert "https://x/\ufffd" in data.decode()


def test_a_lone_surrogate_in_a_key_or_a_malformed_item_is_stored() -> None:
    result = _through_parquet([{**call(1), "\ud800": 1}, "\ud800", call(2)])
    assert result.counts.uploaded == 2 and result.counts.rejects_by_reason == {"malformed_record": 1}


@pytest.mark.parametrize(
    "bad_id",
    [
        1.2345678901234567e18,  # beyond 2^53: a float that lost digits
        1234567890123456789.0,
        "１２３",  # full-width digits
        "١٢٣",  # Arabic-Indic digits
        "1_000",
        "1e3",
        "+5",
        -5,
        "-5",
        0,
        "9" * 30,
        float(2**53 + 2),
    ],
)
def test_call_id_that_is_not_exactly_a_positive_integer_is_invalid(bad_id: Any) -> None:
    assert rejected_reason(call(bad_id)) == "invalid_call_id"


def test_two_float_call_ids_never_collapse_into_one() -> None:
    """1234567890123456789.0 and ...790.0 are the same double: both rejected, neither a duplicate."""
    result = run([call(1234567890123456789.0), call(1234567890123456790.0)])
    assert result.counts.rejects_by_reason == {"invalid_call_id": 2}


@pytest.mark.parametrize(("lookalike", "real"), [("１２３", 123), ("1e3", 1000), ("1_000", 1000)])
def test_a_lookalike_call_id_does_not_shadow_the_real_one(lookalike: str, real: int) -> None:
    result = run([call(lookalike, yaClientId="1732000000123456781"), call(real)])
    assert result.upload_call_ids == [real]
    assert result.counts.rejects_by_reason == {"invalid_call_id": 1}
    assert result.upload["CallTrackerURL"].iloc[0].endswith(f"callId={real}")


@pytest.mark.parametrize("good_id", [7, "7", " 7 ", 7.0, "7.0", float(2**53)])
def test_exact_call_ids_are_still_accepted(good_id: Any) -> None:
    assert run([call(good_id)]).counts.uploaded == 1


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\ufeff", "\u200b", "\u2060", "\u00ad", "\ue000"])
def test_invisible_characters_are_removed_from_tag_and_url(char: str) -> None:
    row = one_row(call(callTags=[{"names": [f"a{char}b"]}], callUrl=f"https://e.ru/{char}x"))
    assert row["Tag"] == "ab"
    assert row["URL"] == "https://e.ru/x"


@pytest.mark.parametrize("duration", [10**30, 30.7, "abc", True, "1e3", 86_401, "３０"])
@pytest.mark.parametrize("field", ["duration", "waitingConnect"])
def test_an_unreadable_duration_is_rejected_with_a_reason(field: str, duration: Any) -> None:
    """Before: TalkDuration left blank and the call uploaded, nothing recorded."""
    result = run([call(**{field: duration})])
    assert result.counts.rejects_by_reason == {"invalid_duration": 1}
    assert field in result.rejects["detail"].iloc[0] or "duration" in result.rejects["detail"].iloc[0]


@pytest.mark.parametrize("duration", [0, 86_400, "30", 30.0, None])
def test_sane_durations_still_upload(duration: Any) -> None:
    assert run([call(duration=duration)]).counts.uploaded == 1


def test_call_tags_as_json_text_are_parsed() -> None:
    assert one_row(call(callTags='[{"names":["a","b"]}]'))["Tag"] == "a, b"
    assert one_row(call(callTags='{"names":["c"]}'))["Tag"] == "c"


@pytest.mark.parametrize("tags", [5, True, 1.5, "[{broken", '{"names": '])
def test_call_tags_of_no_usable_shape_are_rejected_not_blank(tags: Any) -> None:
    assert rejected_reason(call(callTags=tags)) == "invalid_call_tags"
    # with tags off, the shape of callTags does not matter
    assert run([call(callTags=tags)], include_tags=False).counts.uploaded == 1


@pytest.mark.parametrize("client_id", ["0", "00000000000000000001", "0123", " 0 "])
def test_client_id_zero_or_with_leading_zeros_is_invalid(client_id: str) -> None:
    assert rejected_reason(call(yaClientId=client_id)) == "invalid_identifier"
    assert rejected_reason(call(yaClientId=client_id), identifier="Yclid") == "invalid_identifier"


@pytest.mark.parametrize("char", ["\u200b", "\ufeff", "\u2028"])
def test_user_id_with_an_invisible_character_is_invalid(char: str) -> None:
    assert rejected_reason(call(yaClientId=f"user{char}1"), identifier="UserId") == "invalid_identifier"


def test_new_reason_codes_are_documented() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for code in ("invalid_call_id", "invalid_duration", "invalid_call_tags"):
        assert code in REASONS
        assert f"`{code}`" in readme
