"""``python -m sandbox`` options, and the CSV parser as a pure function (property-based)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.__main__ import overrides_from, parse_args
from sandbox.metrika_csv import CsvError, parse_calls_csv

REPO = Path(__file__).resolve().parents[2]
NOW = 1_732_100_000


def test_options_become_config_overrides():
    args = parse_args(
        [
            "--port",
            "9000",
            "--seed",
            "7",
            "--calls-per-day",
            "10",
            "--status-step-seconds",
            "0.5",
            "--config-json",
            '{"points_budget": 20, "calls_per_day": 99}',
        ]
    )
    assert args.port == 9000
    assert overrides_from(args) == {
        "points_budget": 20,
        "calls_per_day": 10,
        "seed": 7,
        "status_step_seconds": 0.5,
    }
    assert overrides_from(parse_args(["--seed", "demo"]))["seed"] == "demo"
    assert overrides_from(parse_args([])) == {}


@pytest.mark.parametrize(
    "bad", [["--config-json", '{"nope": 1}'], ["--calls-per-day", "200000"], ["--config-json", "[1]"]]
)
def test_invalid_configuration_exits_2_with_a_message(bad):
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", "1", *bad],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid configuration" in proc.stderr


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_row = st.fixed_dictionaries(
    {
        "ClientId": st.integers(10**18, 10**19 - 1).map(str),
        "DateTime": st.integers(1, NOW).map(str),
        "Price": st.decimals(0, 10**6, places=2, allow_nan=False).map(str),
        "PhoneNumber": st.integers(10**10, 10**15 - 1).map(lambda n: f"+{n}"),
        "CallMissed": st.sampled_from(["0", "1", ""]),
        "Tag": _text,
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_row, max_size=15))
def test_any_valid_file_round_trips(rows):
    """Whatever csv.writer produces from valid values parses back to the same strings."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=["ClientId", "DateTime", "Price", "PhoneNumber", "CallMissed", "Tag"]
    )
    writer.writeheader()
    writer.writerows(rows)
    parsed = parse_calls_csv(out.getvalue().encode("utf-8"), NOW, "CLIENT_ID")
    assert parsed.rows == rows
    assert len(parsed.valid_rows) == len(rows)


def test_future_date_time_is_a_file_error():
    with pytest.raises(CsvError) as exc:
        parse_calls_csv(f"ClientId,DateTime\n1,{NOW + 1}\n".encode(), NOW)
    assert exc.value.location == "line 2, column DateTime"
