"""transforms/phones.py: the fast path, the library path, the E.164 shape, hashing."""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calltouch_metrika.transforms.phones import E164_PATTERN, hash_phones, normalize_phone, normalize_phones


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("79991234567", "+79991234567"),  # Calltouch's usual shape
        ("89991234567", "+79991234567"),  # trunk prefix 8
        ("+7 (999) 123-45-67", "+79991234567"),
        ("7.999.123.45.67", "+79991234567"),
        ("9991234567", "+79991234567"),  # mobile without the trunk prefix
        ("8 (495) 123-45-67", "+74951234567"),
        ("375291234567", "+375291234567"),  # a foreign caller without the plus (library path)
        ("+1 650 253 0000", "+16502530000"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_known_shapes_normalise(raw: str, expected: str) -> None:
    assert normalize_phones([raw]).tolist() == [expected]
    assert normalize_phone(raw) == expected or raw.startswith(("7", "8", "9", "+7"))  # fast-path-only shapes


@pytest.mark.parametrize(
    "raw", [None, "", "   ", "abc", "123", "+", "++7", "7" * 40, "1" * 65, "<не указано>", "\x00"]
)
def test_not_a_phone_number_is_null_never_an_error(raw: object) -> None:
    assert normalize_phone(raw) is None
    assert normalize_phones([raw]).isna().all()


def test_non_string_values_are_read_as_text_and_nulls_stay_null() -> None:
    out = normalize_phones([79991234567, None, float("nan"), "89991234567"])
    assert out.tolist()[0] == "+79991234567" and out.tolist()[3] == "+79991234567"
    assert out.isna().tolist() == [False, True, True, False]


def test_arrow_input_and_index_are_kept() -> None:
    out = normalize_phones(pa.chunked_array([["79991234567", None], ["89991234567"]]))
    assert out.dtype == pd.ArrowDtype(pa.string())
    assert out.tolist()[0] == "+79991234567" and out.isna().tolist() == [False, True, False]
    series = pd.Series(["79991234567", "x"], index=[10, 20])
    assert normalize_phones(series).index.tolist() == [10, 20]
    assert normalize_phones(pa.array([79991234567])).tolist() == ["+79991234567"]


def test_default_region_reads_national_numbers() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phones(["020 7946 0958"], "GB").tolist() == ["+442079460958"]


def test_every_result_has_the_metrika_shape() -> None:
    short = normalize_phone("+47 22 12 34 56")  # Norway: 8 national digits -> 10 with the country code
    assert short is None or E164_PATTERN.match(short)
    assert normalize_phone("+290 2 1234") is None  # Saint Helena: too short for Metrika's 10-15 digits


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(), st.text(max_size=30), st.from_regex(r"\+?[78]?[0-9 ()\-]{6,16}", fullmatch=True)
        ),
        max_size=20,
    )
)
def test_normalize_never_raises_and_always_matches_e164(values: list[str | None]) -> None:
    out = normalize_phones(values)
    assert len(out) == len(values)
    for value in out.dropna():
        assert E164_PATTERN.match(value), value


def test_hashing_normalises_first_and_is_salted() -> None:
    hashed = hash_phones(["89991234567", "+7 (999) 123-45-67", None, "", "not a phone"], salt="s")
    expected = hashlib.sha256(b"s+79991234567").hexdigest()
    assert hashed.tolist()[:2] == [expected, expected]
    assert hashed.isna().tolist()[2:4] == [True, True]
    assert hashed.tolist()[4] == hashlib.sha256(b"snot a phone").hexdigest()
    assert hash_phones(["89991234567"], salt="other").tolist()[0] != expected
    assert all("7999" not in h for h in hashed.dropna())
