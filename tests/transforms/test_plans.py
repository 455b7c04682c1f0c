"""Plan file validation, item building, batching and violation mapping (pure, no I/O)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltouch_metrika.catalog import CALLTOUCH_METRIC_NAMES, FREE_NAME_TYPES, METRIC_TYPES
from calltouch_metrika.exceptions import PlanFileError
from calltouch_metrika.transforms.plans import (
    MAX_BATCH_SIZE,
    PLAN_COLUMNS,
    PlanRow,
    batch_sha256,
    make_batches,
    map_violations,
    parse_plan_csv,
    read_plan_bytes,
)
from tests.helpers import PLAN_HEADER, SEED_BODY_ITEMS, SEED_PLAN_ROWS, plan_csv

REPO = Path(__file__).resolve().parents[2]


def problems_of(text: str, file: str = "plan.csv") -> list[str]:
    with pytest.raises(PlanFileError) as exc:
        parse_plan_csv(text, file=file)
    # the message itself lists them too, one per line
    assert all(p in str(exc.value) for p in exc.value.problems)
    return exc.value.problems


def test_seed_example_rows_build_the_seed_items() -> None:
    """The three items of seed 001's example body, written as a plan file, give that exact body."""
    rows = parse_plan_csv(plan_csv(*SEED_PLAN_ROWS), file="seed.csv")
    assert [r.item for r in rows] == SEED_BODY_ITEMS
    assert [r.row for r in rows] == [2, 3, 4]


def test_bom_blank_lines_and_spaces_are_tolerated() -> None:
    data = (
        "\ufeff" + plan_csv("", " 2021-04-01 , 2021-04-01 , yandex ,,,,, Лиды , Все лиды , 7 ", "")
    ).encode()
    rows = read_plan_bytes(data, file="bom.csv")
    assert len(rows) == 1
    assert rows[0].row == 3
    assert rows[0].item == {
        "dateFrom": "01-04-2021",
        "dateTo": "01-04-2021",
        "source": "yandex",
        "metric": {"type": "Лиды", "name": "Все лиды", "value": 7},
    }


def test_columns_may_come_in_any_order() -> None:
    header = "metric_type,metric_name,value,date_from,date_to,keyword,content,campaign,medium,source"
    rows = parse_plan_csv(
        plan_csv("Площадки,Бюджет,5000,2021-01-01,2021-01-31,,,,,yandex", header=header), file="x"
    )
    assert rows[0].item["metric"] == {"type": "Площадки", "name": "Бюджет", "value": 5000}
    assert rows[0].item["source"] == "yandex"


def test_every_problem_is_reported_at_once_with_file_row_and_field() -> None:
    text = plan_csv(
        "2021-04-20,2021-04-01,yandex,,,,,Лиды,Уникальные лиды,1.5",  # 2: dates reversed, decimal
        "2021-02-30,2021-04-01,,,,,,Лидс,Все лиды,10 000",  # 3: bad date, no dims, bad type, spaced int
        "2021-04-01,2021-04-01,a,,,,,Электронная торговля,Удален из корзины,",  # 4: е vs ё, empty value
        "2021-04-01,2021-04-01,a,,,,,Пользовательские,Выручка,3",  # 5: custom name collides
        "2021-04-01,2021-04-01,a,,,,,Цели,Все звонки,3",  # 6: goal name collides
        "2021-04-01,2021-04-01,a,,,,,Лиды,Выручка,3",  # 7: name of another type
        "2021-04-01,2021-04-01,a,,,,,Лиды,Все лиды,3",  # 8: fine
        "2021-04-01,2021-04-01,a,,,,,Лиды,Все лиды,4",  # 9: duplicate of 8 (value differs)
        "01.04.2021,2021-04-01,a,,,,,Лиды,Все лиды,4",  # 10: not ISO
        "2021-04-01,2021-04-01,a,,,,,,,4",  # 11: empty type and name
        "2021-04-01,2021-04-01,a",  # 12: short row
    )
    problems = problems_of(text)
    expected_prefixes = [
        "plan.csv:2: date_from: date_from 2021-04-20 is after date_to 2021-04-01",
        "plan.csv:2: value: '1.5' is not an integer",
        "plan.csv:3: date_from: '2021-02-30' is not a valid date",
        "plan.csv:3: source: at least one of source, medium, campaign, content, keyword must be filled",
        "plan.csv:3: metric_type: unknown metric type 'Лидс' (did you mean 'Лиды'?)",
        "plan.csv:3: value: '10 000' is not an integer",
        "plan.csv:4: metric_name: 'Удален из корзины' is not a metric of type 'Электронная торговля' "
        "(did you mean 'Удалён из корзины'?)",
        "plan.csv:4: value: must not be empty",
        "plan.csv:5: metric_name: custom column name 'Выручка' collides with the Calltouch metric",
        "plan.csv:6: metric_name: goal name 'Все звонки' collides with the Calltouch metric",
        "plan.csv:7: metric_name: 'Выручка' is a metric of type 'Сделки и ROI', not of type 'Лиды'",
        "plan.csv:9: row: duplicate of row 8",
        "plan.csv:10: date_from: '01.04.2021' is not an ISO date (YYYY-MM-DD)",
        "plan.csv:11: metric_type: must not be empty",
        "plan.csv:11: metric_name: must not be empty",
        "plan.csv:12: row: has 3 fields, the header has 10",
    ]
    assert len(problems) == len(expected_prefixes), "\n".join(problems)
    for got, want in zip(problems, expected_prefixes, strict=True):
        assert got.startswith(want), (got, want)


def test_header_problems_unknown_missing_and_repeated_columns() -> None:
    header = "date_from,date_to,source,medium,campain,content,keyword,metric_type,metric_name,value,value"
    problems = problems_of(plan_csv("2021-04-01,2021-04-01,a,,,,,Лиды,Все лиды,1,1", header=header))
    assert problems == [
        "plan.csv:1: campain: unknown column (did you mean 'campaign'?); expected: "
        + ", ".join(PLAN_COLUMNS),
        "plan.csv:1: value: column appears more than once",
        "plan.csv:1: campaign: missing column",
    ]


def test_rows_are_still_checked_when_a_column_is_missing() -> None:
    header = "date_from,date_to,source,medium,campaign,content,keyword,metric_type,metric_name"
    problems = problems_of(plan_csv("2021-04-01,2021-03-01,a,,,,,Лиды,Все лиды", header=header))
    assert problems == [
        "plan.csv:1: value: missing column",
        "plan.csv:2: date_from: date_from 2021-04-01 is after date_to 2021-03-01",
    ]


def test_multiline_quoted_cell_keeps_line_numbers_right() -> None:
    text = plan_csv(
        '2021-04-01,2021-04-01,"multi\nline",,,,,Лиды,Все лиды,1',
        "2021-04-01,2021-04-01,a,,,,,Лиды,Все лиды,x",
    )
    assert problems_of(text) == [
        "plan.csv:4: value: 'x' is not an integer (digits only, no spaces or decimals)"
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "plan.csv:1: header: the file is empty"),
        (PLAN_HEADER.encode() + b"\n", "plan.csv:2: row: the file has a header but no plan rows"),
        (
            PLAN_HEADER.encode() + b"\n2021-04-01,2021-04-01,\xcf\xf0,,,,,\xcb,x,1\n",
            "plan.csv:2: encoding: the file is not UTF-8 (byte 0xcf at offset",
        ),
    ],
)
def test_empty_headless_and_non_utf8_files(data: bytes, expected: str) -> None:
    with pytest.raises(PlanFileError) as exc:
        read_plan_bytes(data, file="plan.csv")
    assert exc.value.problems[0].startswith(expected)


def test_every_enumerated_name_is_accepted_and_free_names_too() -> None:
    lines = [
        f"2021-04-01,2021-04-01,s{i},,,,,{t},{n},{i}"
        for i, (t, n) in enumerate((t, n) for t, names in METRIC_TYPES.items() for n in sorted(names))
    ]
    lines += [f"2021-04-01,2021-04-01,x,,,,,{t},Мой показатель,1" for t in sorted(FREE_NAME_TYPES)]
    rows = parse_plan_csv(plan_csv(*lines), file="all.csv")
    assert len(rows) == len(CALLTOUCH_METRIC_NAMES) + len(FREE_NAME_TYPES)


@pytest.mark.parametrize("name", ["plans_10001.csv", "plans_10002.csv"])
def test_sample_plan_files_are_valid_and_cover_every_metric_type(name: str) -> None:
    rows = read_plan_bytes((REPO / "include" / "plans" / name).read_bytes(), file=name)
    assert {r.item["metric"]["type"] for r in rows} == set(METRIC_TYPES)


def _rows(n: int) -> list[PlanRow]:
    return [
        PlanRow(
            file="big.csv",
            row=i + 2,
            item={
                "dateFrom": "01-04-2021",
                "dateTo": "01-04-2021",
                "source": f"s{i}",
                "metric": {"type": "Лиды", "name": "Все лиды", "value": i},
            },
        )
        for i in range(n)
    ]


def test_250_rows_make_three_batches_in_file_order() -> None:
    batches = make_batches(_rows(250))
    assert [len(b.items) for b in batches] == [100, 100, 50]
    assert batches[0].rows[0] == 2 and batches[2].rows[-1] == 251
    assert batches[1].describe_rows() == "big.csv:rows 102-201"
    assert [b.index for b in batches] == [0, 1, 2]


@given(st.integers(min_value=1, max_value=450), st.integers(min_value=1, max_value=MAX_BATCH_SIZE))
def test_batches_keep_every_row_once_in_order(n: int, size: int) -> None:
    rows = _rows(n)
    batches = make_batches(rows, size)
    assert all(1 <= len(b.items) <= size for b in batches)
    assert [r for b in batches for r in b.rows] == [r.row for r in rows]
    assert [i for b in batches for i in b.items] == [r.item for r in rows]


def test_batch_size_above_the_api_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        make_batches(_rows(3), 101)


def test_content_hash_depends_on_items_and_site_only() -> None:
    items = [r.item for r in _rows(3)]
    reordered_keys = [json.loads(json.dumps(dict(reversed(list(i.items()))))) for i in items]
    assert batch_sha256(items, 10001) == batch_sha256(reordered_keys, 10001)
    assert batch_sha256(items, 10001) != batch_sha256(items, 10002)
    assert batch_sha256(items, 10001) != batch_sha256(items[:2], 10001)
    assert len(batch_sha256(items, 10001)) == 64


def test_server_violations_map_back_to_file_rows() -> None:
    batch = make_batches(_rows(150))[1]  # items[0] is file row 102
    lines = map_violations(
        batch,
        [
            ("items[0].source", "Должно быть заполнено одно или несколько из полей"),
            ("items[3].metric.name", "Название пользовательского столбца не уникально, импорт невозможен."),
            ("items[1].dateTo", "Значение не является правильной датой."),
            ("items[n].metric.type", "Значение не совпадает с одним из допустимых."),
            ("items", "Эта коллекция должна содержать 1 элемент или больше."),
            ("", 'В запросе не указано обязательное поле "dateTo"'),
        ],
    )
    assert lines == [
        "big.csv:102: source: Должно быть заполнено одно или несколько из полей",
        "big.csv:105: metric_name: Название пользовательского столбца не уникально, импорт невозможен.",
        "big.csv:103: date_to: Значение не является правильной датой.",
        "big.csv:rows 102-151: metric_type: Значение не совпадает с одним из допустимых. (items[n].metric.type)",
        "big.csv:rows 102-151: items: Эта коллекция должна содержать 1 элемент или больше.",
        'big.csv:rows 102-151: request: В запросе не указано обязательное поле "dateTo"',
    ]


# ------------------------------------------------------------------ issue 13 §3


@pytest.mark.parametrize("value", ["99999999999999999999999", "9223372036854775808", "-9223372036854775809"])
def test_value_beyond_a_signed_64_bit_integer_is_rejected(value: str) -> None:
    assert problems_of(plan_csv(f"2021-04-01,2021-04-01,yandex,,,,,Лиды,Все лиды,{value}")) == [
        f"plan.csv:2: value: {value} is out of range: a plan value is a signed 64-bit integer (|value| < 2^63)"
    ]


def test_the_64_bit_bounds_themselves_are_accepted() -> None:
    rows = parse_plan_csv(
        plan_csv(
            "2021-04-01,2021-04-01,yandex,,,,,Лиды,Все лиды,9223372036854775807",
            "2021-04-02,2021-04-02,yandex,,,,,Лиды,Все лиды,-9223372036854775808",
        ),
        file="plan.csv",
    )
    assert [r.item["metric"]["value"] for r in rows] == [2**63 - 1, -(2**63)]


@pytest.mark.parametrize(
    ("column", "cells", "char"),
    [
        ("content", "yandex,cpc,april,sa\x00le,", "U+0000"),
        ("source", "yan\x07dex,,,,", "U+0007"),
        ("keyword", "yandex,,,,key\u202eword", "U+202E"),
        ("campaign", "yandex,,\x1bapril,,", "U+001B"),
    ],
)
def test_control_and_bidi_characters_in_a_text_field_are_rejected(column: str, cells: str, char: str) -> None:
    problems = problems_of(plan_csv(f"2021-04-01,2021-04-01,{cells},Лиды,Все лиды,1"))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"plan.csv:2: {column}: contains the invisible character {char} at position "
    )


def test_control_character_in_metric_name_is_named_too() -> None:
    problems = problems_of(plan_csv("2021-04-01,2021-04-01,yandex,,,,,Лиды,Все\x00лиды,1"))
    assert problems[0].startswith("plan.csv:2: metric_name: contains the invisible character U+0000")


# ------------------------------------------------------------------ findings of the 07:40 probe (item 8)


@pytest.mark.parametrize(
    ("field", "cells"),
    [
        ("date_from", "0001-01-01,2021-04-01"),
        ("date_from", "0999-12-31,2021-04-01"),
        ("date_from", "1999-12-31,2021-04-01"),
        ("date_to", "2021-04-01,9999-12-31"),
        ("date_to", "2021-04-01,2100-01-01"),
    ],
)
def test_absurd_dates_are_refused_naming_file_row_and_field(field: str, cells: str) -> None:
    """Before: 0001-01-01 was sent to Calltouch as "01-01-1"."""
    problems = problems_of(plan_csv(f"{cells},yandex,,,,,Лиды,Все лиды,1"))
    assert len(problems) == 1
    assert problems[0].startswith(f"plan.csv:2: {field}: ")
    assert "outside 2000-01-01 .. 2099-12-31" in problems[0]


def test_dates_at_the_bounds_are_sent_with_four_digit_years() -> None:
    rows = parse_plan_csv(plan_csv("2000-01-01,2099-12-31,yandex,,,,,Лиды,Все лиды,1"), file="plan.csv")
    assert (rows[0].item["dateFrom"], rows[0].item["dateTo"]) == ("01-01-2000", "31-12-2099")


@pytest.mark.parametrize(
    "char", ["\u200b", "\u2060", "\ufeff", "\u2028", "\u2029", "\u00ad", "\u200d", "\ue000"]
)
def test_zero_width_and_other_invisible_characters_are_rejected(char: str) -> None:
    problems = problems_of(plan_csv(f"2021-04-01,2021-04-01,yan{char}dex,,,,,Лиды,Все лиды,1"))
    assert problems == [
        f"plan.csv:2: source: contains the invisible character U+{ord(char):04X} at position 4 "
        "(invisible characters are not allowed)"
    ]


@pytest.mark.parametrize("only", ["\u200b", "\u200b\u2060\ufeff", "\u00a0", " \u200b "])
def test_a_dimension_made_only_of_invisible_characters_is_empty(only: str) -> None:
    problems = problems_of(plan_csv(f"2021-04-01,2021-04-01,{only},,,,,Лиды,Все лиды,1"))
    assert (
        "plan.csv:2: source: at least one of source, medium, campaign, content, keyword must be filled"
        in (problems)
    )


@pytest.mark.parametrize("column", ["source", "medium", "campaign", "content", "keyword", "metric_name"])
def test_text_cells_longer_than_the_cap_are_refused(column: str) -> None:
    from calltouch_metrika.transforms.plans import MAX_TEXT_CHARS

    cells = {name: "" for name in ("source", "medium", "campaign", "content", "keyword")}
    cells["source"] = "yandex"
    metric = (
        ("Пользовательские", "x" * (MAX_TEXT_CHARS + 1)) if column == "metric_name" else ("Лиды", "Все лиды")
    )
    if column != "metric_name":
        cells[column] = "y" * (MAX_TEXT_CHARS + 1)
    line = f"2021-04-01,2021-04-01,{','.join(cells.values())},{metric[0]},{metric[1]},1"
    problems = problems_of(plan_csv(line))
    assert (
        f"plan.csv:2: {column}: is {MAX_TEXT_CHARS + 1} characters long; at most {MAX_TEXT_CHARS} are accepted"
        in (problems)
    )


def test_a_text_cell_of_exactly_the_cap_is_accepted() -> None:
    from calltouch_metrika.transforms.plans import MAX_TEXT_CHARS

    rows = parse_plan_csv(
        plan_csv(f"2021-04-01,2021-04-01,{'y' * MAX_TEXT_CHARS},,,,,Лиды,Все лиды,1"), file="p"
    )
    assert len(rows[0].item["source"]) == MAX_TEXT_CHARS


@pytest.mark.parametrize("value", ["１００", "١٠٠", "1_000"])
def test_value_in_non_ascii_digits_is_refused(value: str) -> None:
    problems = problems_of(plan_csv(f"2021-04-01,2021-04-01,yandex,,,,,Лиды,Все лиды,{value}"))
    assert problems[0].startswith("plan.csv:2: value: ")


def test_value_above_a_32_bit_integer_is_kept_64_bit() -> None:
    """Decision (issue 13 §3): money plans exceed 2^31-1; the 64-bit bound stays (see the module doc)."""
    rows = parse_plan_csv(plan_csv("2021-04-01,2021-04-01,yandex,,,,,Лиды,Все лиды,3000000000"), file="p")
    assert rows[0].item["metric"]["value"] == 3_000_000_000
