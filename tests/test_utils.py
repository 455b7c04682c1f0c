"""calltouch_metrika._utils: reading rendered template values back, and the repository root."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from calltouch_metrika._utils import REPO_ROOT, as_bool, as_date


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (True, True),
        (False, False),
        ("True", True),
        (" yes ", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("off", False),
        ("None", False),
        ("", False),
        (None, False),
    ],
)
def test_as_bool_reads_rendered_templates(raw: Any, want: bool) -> None:
    assert as_bool(raw, "dry_run") is want


def test_as_bool_refuses_garbage_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^force must be true or false, got 'maybe'$"):
        as_bool("maybe", "force")


@pytest.mark.parametrize(
    "raw",
    [date(2026, 11, 24), datetime(2026, 11, 24, 23, 59), "2026-11-24", " 2026-11-24T05:00:00+03:00 "],
)
def test_as_date_reads_dates_datetimes_and_iso_strings(raw: Any) -> None:
    assert as_date(raw, "date_from") == date(2026, 11, 24)


def test_as_date_refuses_garbage_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^date_to must be a date like 2026-11-24, got '24\.11\.2026'$"):
        as_date("24.11.2026", "date_to")


def test_repo_root_is_the_checkout() -> None:
    assert (REPO_ROOT / "plugins" / "calltouch_metrika" / "_utils.py").is_file()
    assert (REPO_ROOT / "include" / "config" / "pipelines.yaml").is_file()
