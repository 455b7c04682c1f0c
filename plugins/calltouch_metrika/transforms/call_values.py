"""Value-level helpers of the calls transform: typed columns as NumPy, JSON fields, text cleaning.

What each helper decides is documented on it; the rules that use them (and their order) are in
:mod:`calltouch_metrika.transforms.calls`.

Free text sent to Metrika (``Tag``, ``URL``; seed 000 says only "free text" / "page associated with
the call", no length is documented: api-notes §3.3 [?]). Our choice, applied by :func:`tag_text`
and :func:`clean_urls`:

* invisible characters are removed: control characters (Unicode category ``Cc``: C0 ``U+0000``-``U+001F``
  incl. NUL, ``U+007F``, C1 ``U+0080``-``U+009F``), format characters (``Cf``: zero-width space U+200B,
  word joiner U+2060, BOM U+FEFF, soft hyphen, the bidirectional marks and overrides such as U+202E
  that makes text display reversed), the line and paragraph separators U+2028/U+2029 (``Zl``, ``Zp``)
  and private-use characters (``Co``; in ``Tag`` also unassigned code points)
  (:mod:`calltouch_metrika.transforms.text`). Exception: in ``Tag``, tab and line breaks (``\\t``,
  ``\\n``, ``\\r``) are kept (CSV quoting makes them safe and a tag may be multi-line);
* ``Tag`` longer than :data:`MAX_TAG_CHARS` characters is cut to that length (the call is still
  uploaded: the tag is optional and its start is what people read);
* ``URL`` longer than :data:`MAX_URL_CHARS` characters is dropped (left empty): a cut URL would be a
  different, wrong page.

Pure: no I/O, no Airflow import.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from calltouch_metrika.transforms.text import strip_invisible

__all__ = [
    "CENT",
    "INVALID",
    "MAX_PRICE",
    "MAX_TAG_CHARS",
    "MAX_URL_CHARS",
    "TAGS_INVALID",
    "bools",
    "clean_urls",
    "ints",
    "map_distinct",
    "map_distinct_array",
    "np_mask",
    "orders_amount",
    "tag_text",
    "to_decimal",
]

MAX_PRICE = Decimal(10) ** 15
CENT = Decimal("0.01")
#: our caps (no documented Metrika limit; see the module docstring)
MAX_TAG_CHARS = 1000
MAX_URL_CHARS = 2048
#: sentinel returned by :func:`orders_amount` for an unusable amount
INVALID = object()

#: what :func:`tag_text` returns for ``callTags`` of no usable shape (never a real tag: it holds NUL)
TAGS_INVALID = "\x00invalid callTags\x00"
#: RE2 syntax (Arrow compute): control, format (zero-width, BOM, bidi), line/paragraph separator and
#: private-use characters (Unicode categories Cc, Cf, Zl, Zp, Co)
_URL_STRIP_RE2 = r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}]"


def to_decimal(value: Any) -> Decimal | None:
    """A finite non-negative Decimal from an int/float/str amount, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(value.strip().replace(" ", "")) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not number.is_finite() or number < 0:
        return None
    return number


def ints(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Column ``name`` as ``(int64 values with nulls as 0, validity mask)``."""
    column = table.column(name)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return values, valid


def bools(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Column ``name`` as ``(bool values with nulls as False, validity mask)``."""
    column = table.column(name)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    values = pc.fill_null(column, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
    return values, valid


def np_mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow array as a NumPy mask (null -> False)."""
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def clean_urls(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """URL text without any control/bidi character; values over MAX_URL_CHARS become null."""
    cleaned = pc.replace_substring_regex(array, _URL_STRIP_RE2, "")
    too_long = pc.greater(pc.utf8_length(cleaned), MAX_URL_CHARS)
    return pc.if_else(too_long, pa.scalar(None, pa.string()), cleaned)


def tag_text(text: str | None) -> str | None:
    """``callTags`` JSON -> ``"name1, name2"`` (names flattened, blanks and repeats dropped).

    The tag groups may also arrive as JSON *text* (``"[{\"names\": [\"a\"]}]"``): it is parsed; a plain
    string is one tag name. A value of no usable shape (a number, a boolean, JSON text that is not
    tags) gives :data:`TAGS_INVALID` (the call is rejected as ``invalid_call_tags``), never a silent blank.
    """
    if text is None:
        return None
    try:
        tags = json.loads(text)
    except ValueError:
        return TAGS_INVALID
    if isinstance(tags, str):  # JSON text inside the JSON: the groups, or one plain tag name
        stripped = tags.strip()
        if stripped[:1] in ("[", "{"):
            try:
                tags = json.loads(stripped)
            except ValueError:
                return TAGS_INVALID
        else:
            tags = [tags]
    if tags is None:
        return None
    if isinstance(tags, dict):
        tags = [tags]
    if not isinstance(tags, list):
        return TAGS_INVALID
    names: dict[str, None] = {}
    for tag in tags:
        candidates: list[Any]
        if isinstance(tag, dict):
            raw = tag.get("names")
            candidates = raw if isinstance(raw, list) else [raw]
        elif isinstance(tag, str):
            candidates = [tag]
        else:
            continue
        for name in candidates:
            if name is None or isinstance(name, dict | list):
                continue
            name_text = strip_invisible(str(name), keep="\t\n\r").strip()
            if name_text:
                names.setdefault(name_text, None)
    return ", ".join(names)[:MAX_TAG_CHARS] if names else None


def orders_amount(text: str | None) -> Decimal | object | None:
    """Total amount of a call's ``orders`` JSON; None without amounts; ``INVALID`` for a bad amount."""
    if text is None:
        return None
    try:
        orders = json.loads(text)
    except ValueError:
        return INVALID
    if isinstance(orders, dict):
        orders = [orders]
    if not isinstance(orders, list):
        return INVALID
    total: Decimal | None = None
    for order in orders:
        if not isinstance(order, dict):
            continue
        raw = None
        for key in ("completedAmount", "realSum", "plannedAmount", "orderSum", "sum"):
            if order.get(key) is not None:
                raw = order[key]
                break
        if raw is None:
            continue
        amount = to_decimal(raw)
        if amount is None:
            return INVALID
        total = amount if total is None else total + amount
    if total is not None:
        try:
            total = total.quantize(CENT, rounding=ROUND_HALF_UP)
        except InvalidOperation:  # too many digits for a price (e.g. 1e+26): not a real amount
            return INVALID
        if total >= MAX_PRICE:
            return INVALID
    return total


def map_distinct(array: pa.ChunkedArray, func: Any) -> list[Any]:
    """Apply ``func`` once per distinct value of a string column; return a Python list aligned to rows."""
    encoded = pc.dictionary_encode(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    mapped = [func(v) for v in encoded.dictionary.to_pylist()]
    out: list[Any] = [None] * len(array)
    if mapped:
        lookup = np.array([*mapped, None], dtype=object)
        indices = pc.fill_null(encoded.indices, len(mapped)).to_numpy(zero_copy_only=False).astype(np.int64)
        picked = lookup[indices]
        out = picked.tolist()
    return out


def map_distinct_array(array: pa.ChunkedArray, func: Any, arrow_type: pa.DataType) -> pa.Array:
    """Like :func:`map_distinct` but stays in Arrow: map the dictionary, then ``take`` by index."""
    encoded = pc.dictionary_encode(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    mapped = pa.array([func(v) for v in encoded.dictionary.to_pylist()], type=arrow_type)
    return pc.take(mapped, encoded.indices)
