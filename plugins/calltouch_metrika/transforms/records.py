"""Calltouch call records (the calls-diary API's JSON objects) -> an Arrow table with a FIXED schema.

Why a fixed schema: the extract operator writes one Parquet file per site and local day; every file
must have the same columns and types, even a day with no calls or a day where the API left a field
out, so that the transform, backfills and any reader of the dataset can rely on them.

Mapping (api-notes §1.4; types from Airbyte's ``calls.json`` and mg-realcom's ``Call``):

* scalar fields keep their API name and get a type: ``int64`` (``callId``, ``timestamp``,
  ``duration``, ``waitingConnect``, ``sessionId``, ``ctClientId``, ``siteId``, ``attribution``),
  ``bool`` (``successful``, ``uniqueCall``, ``targetCall``, ``uniqTargetCall``, ``callbackCall``) or
  ``string`` (everything else, e.g. ``date``, ``yaClientId``, ``callerNumber``, ``utm*``);
* nested objects and arrays (``callTags``, ``orders``, ``comments``, ``mapVisits``, ``yandexDirect``,
  ``googleAdWords``, ...) are stored as JSON text (``string`` columns; null when absent), so the
  Parquet schema never depends on their content;
* keys not in :data:`CALLS_SCHEMA` are ignored: the docs say undescribed keys are obsolete
  (seed 004). Key spellings seen in the wild are accepted as aliases when the canonical key is
  absent: any letter case of a known key (seed 004 has ``RequestTags``), ``guaClientId`` for
  ``clientId``.

Values in the wild are coerced leniently, never raising: booleans given as ``"true"``/``"True"``/
``"1"``/``1``; numbers given as strings of ASCII digits (``"123"``, ``"12.0"``); integral floats up to
2^53 (beyond, a double has lost digits); numbers in string columns (``79991234567`` ->
``"79991234567"``). A value that cannot be coerced (``"abc"`` for an integer, an integer beyond int64,
a non-integral float, a float beyond 2^53, lookalikes such as ``"１２３"``, ``"1_000"``, ``"1e3"``)
becomes null and its field is named in the row's ``invalidFields`` column; the calls transform then
rejects the call if it needed that field. ``callId`` is stricter still: only a positive integer
(a JSON integer, an integral float up to 2^53, or ASCII digits) is one; anything else is null.

Text is stored as UTF-8: a lone surrogate (``"\\ud800"`` in the JSON), in any string or JSON field,
becomes U+FFFD (:func:`~calltouch_metrika.transforms.text.clean_text`), so the day's Parquet file can
always be written.

An item of a page that is not a JSON object (``null``, ``[]``, ``"str"``, ``123``) does not fail the
day: it becomes a row whose fields are all null and whose ``malformedRecord`` column holds the item
as JSON text (at most 1,000 characters); the calls transform rejects that row as
``malformed_record``, so it lands in the rejects dataset and counts in ``extracted = uploaded +
rejected``. ``malformedRecord`` is null on every well-formed row.

``hash_phone_numbers=True`` replaces ``callerNumber`` and ``redirectNumber`` by a salted SHA-256 hex
digest of the normalised number (see :func:`~calltouch_metrika.transforms.phones.hash_phones`), so
the stored data holds no phone number; the ``phonesHashed`` column (and the schema metadata key
``calltouch_metrika.phones_hashed``) says so, and the calls transform then leaves Metrika's
``PhoneNumber`` empty.

Pure: no I/O, no Airflow import.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from calltouch_metrika.transforms.phones import hash_phones
from calltouch_metrika.transforms.text import clean_text

__all__ = [
    "BOOL_FIELDS",
    "CALLS_SCHEMA",
    "INT_FIELDS",
    "INVALID_FIELDS_FIELD",
    "JSON_FIELDS",
    "MALFORMED_RECORD_FIELD",
    "PHONES_HASHED_METADATA_KEY",
    "SCHEMA_VERSION",
    "STRING_FIELDS",
    "calls_to_table",
    "conform_calls_table",
    "empty_calls_table",
]

SCHEMA_VERSION = "3"  # 2: + malformedRecord; 3: + invalidFields (older files are read with them null)
PHONES_HASHED_METADATA_KEY = b"calltouch_metrika.phones_hashed"

INT_FIELDS: tuple[str, ...] = (
    "callId",
    "timestamp",
    "duration",
    "waitingConnect",
    "sessionId",
    "ctClientId",
    "siteId",
    "attribution",
)
BOOL_FIELDS: tuple[str, ...] = ("successful", "uniqueCall", "targetCall", "uniqTargetCall", "callbackCall")
STRING_FIELDS: tuple[str, ...] = (
    "date",
    "sessionDate",
    "callerNumber",
    "phoneNumber",
    "redirectNumber",
    "yaClientId",
    "clientId",
    "ctCallerId",
    "ctGlobalId",
    "sipCallId",
    "callReferenceId",
    "callphase",
    "manager",
    "subPoolName",
    "statusDetails",
    "source",
    "medium",
    "keyword",
    "city",
    "hostname",
    "ref",
    "url",
    "callUrl",
    "utmSource",
    "utmMedium",
    "utmCampaign",
    "utmContent",
    "utmTerm",
    "userAgent",
    "ip",
    "device",
    "os",
    "browser",
    "siteName",
)
JSON_FIELDS: tuple[str, ...] = (
    "callTags",
    "orders",
    "comments",
    "mapVisits",
    "yandexDirect",
    "googleAdWords",
    "dcm",
    "callbackInfo",
    "phrases",
    "phonesInText",
    "additionalTags",
    "attrs",
)

#: Column holding a page item that was not a JSON object (as JSON text); null on every real call.
MALFORMED_RECORD_FIELD = "malformedRecord"
#: Column naming (comma-separated) the integer/boolean fields whose value was present in the API's JSON
#: but could not be typed (``duration`` ``10**30``, ``30.7``, ``"abc"``): null when there is none.
INVALID_FIELDS_FIELD = "invalidFields"
_MALFORMED_MAX_CHARS = 1000

#: The schema of every calls table / Parquet file. Column order: ints, booleans, strings, JSON
#: text, ``malformedRecord``, ``invalidFields``, then ``phonesHashed`` (never null).
CALLS_SCHEMA: pa.Schema = pa.schema(
    [pa.field(name, pa.int64()) for name in INT_FIELDS]
    + [pa.field(name, pa.bool_()) for name in BOOL_FIELDS]
    + [pa.field(name, pa.string()) for name in STRING_FIELDS]
    + [pa.field(name, pa.string()) for name in JSON_FIELDS]
    + [pa.field(MALFORMED_RECORD_FIELD, pa.string())]
    + [pa.field(INVALID_FIELDS_FIELD, pa.string())]
    + [pa.field("phonesHashed", pa.bool_(), nullable=False)],
    metadata={b"calltouch_metrika.schema_version": SCHEMA_VERSION.encode()},
)

_ALIASES: dict[str, str] = {"guaClientId": "clientId"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_EXACT = 2**53
_INT_TEXT = re.compile(r"([+-]?[0-9]+)(?:\.0*)?", re.ASCII)
_CALL_ID_TEXT = re.compile(r"[0-9]+(?:\.0*)?", re.ASCII)
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


def _to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        # beyond 2^53 a double has lost digits: 1.2345678901234567e18 is not the number that was meant
        if not math.isfinite(value) or not value.is_integer() or abs(value) > _FLOAT_EXACT:
            return None
        result = int(value)
    elif isinstance(value, str):
        # ASCII only: int() would also read "１２３" and "1_000", float() "1e3", all lookalikes
        match = _INT_TEXT.fullmatch(value.strip())
        if match is None:
            return None
        result = int(match.group(1))
    else:
        return None
    return result if _INT64_MIN <= result <= _INT64_MAX else None


def _to_call_id(value: Any) -> int | None:
    """A callId: exactly a positive integer (a JSON integer, an integral float <= 2^53, ASCII digits)."""
    if isinstance(value, str) and not _CALL_ID_TEXT.fullmatch(value.strip()):
        return None
    result = _to_int(value)
    return result if result is not None and result > 0 else None


def _to_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value == 1:
            return True
        if value == 0:
            return False
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _to_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # Only integers a double holds exactly (|x| <= 2^53) read as digits: 1.6900000001234567e18
        # stays in exponent form, so an identifier that lost digits in JSON is never mistaken for one.
        return str(int(value)) if value.is_integer() and abs(value) <= _FLOAT_EXACT else repr(value)
    return _to_json(value)


def _to_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(value), ensure_ascii=False)
    return clean_text(text)


def _column(
    values: list[Any], arrow_type: pa.DataType, coerce: Callable[[Any], Any]
) -> tuple[pa.Array, np.ndarray | None]:
    """One typed column: Arrow's own inference (C speed) when the values are clean, else coerce each.

    :return: the column, and a mask of the rows whose value was present but could not be coerced
        (``None`` when there is none).
    """
    try:
        inferred = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        inferred = None
    if inferred is not None:
        if inferred.type.equals(arrow_type):
            return inferred, None
        if pa.types.is_null(inferred.type):
            return pa.nulls(len(values), type=arrow_type), None
    coerced = [coerce(v) for v in values]
    lost = np.fromiter(
        (v is not None and c is None for v, c in zip(values, coerced, strict=True)),
        dtype=bool,
        count=len(values),
    )
    return pa.array(coerced, type=arrow_type), (lost if lost.any() else None)


def _text_array(values: list[str | None]) -> pa.Array:
    """A string column; lone surrogates (not UTF-8) replaced by U+FFFD (:func:`clean_text`)."""
    try:
        return pa.array(values, type=pa.string())
    except UnicodeEncodeError:
        return pa.array([None if v is None else clean_text(v) for v in values], type=pa.string())


def _canonical_keys(records: list[Mapping[str, Any]]) -> tuple[set[str], dict[str, str]]:
    """The keys present in ``records``, and each non-canonical one -> its canonical name (aliases, case)."""
    seen: set[str] = set()
    for record in records:
        seen.update(record.keys())
    by_lower = {name.lower(): name for name in CALLS_SCHEMA.names}
    known = set(CALLS_SCHEMA.names)
    mapping: dict[str, str] = {}
    for key in seen:
        if not isinstance(key, str) or key in known:
            continue
        if key in _ALIASES:
            mapping[key] = _ALIASES[key]
        elif key.lower() in by_lower and by_lower[key.lower()] != "phonesHashed":
            mapping[key] = by_lower[key.lower()]
    return seen, mapping


def _values(records: list[Mapping[str, Any]], name: str, aliases: list[str]) -> list[Any]:
    values = [record.get(name) for record in records]
    for alias in aliases:
        values = [
            record.get(alias) if value is None else value
            for value, record in zip(values, records, strict=True)
        ]
    return values


def empty_calls_table(*, phones_hashed: bool = False) -> pa.Table:
    """A table with :data:`CALLS_SCHEMA` and no rows."""
    return _with_hash_metadata(CALLS_SCHEMA.empty_table(), phones_hashed)


def _with_hash_metadata(table: pa.Table, phones_hashed: bool) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata[PHONES_HASHED_METADATA_KEY] = b"true" if phones_hashed else b"false"
    return table.replace_schema_metadata(metadata)


def calls_to_table(
    records: Iterable[Mapping[str, Any]], *, hash_phone_numbers: bool = False, phone_salt: str = ""
) -> pa.Table:
    """Turn Calltouch call records into a :data:`CALLS_SCHEMA` table (see the module docstring).

    :param records: the call objects as returned by the calls-diary API (``list[dict]``). An item
        that is not a mapping becomes a ``malformedRecord`` row (module docstring), never an error.
    :param hash_phone_numbers: replace ``callerNumber`` and ``redirectNumber`` by salted SHA-256
        hex digests, so the stored data holds no phone number.
    :param phone_salt: the salt (keep it secret and stable, or hashes stop matching across days).
    :return: a table with exactly the columns of :data:`CALLS_SCHEMA`, in that order; rows in input
        order; schema metadata ``calltouch_metrika.phones_hashed`` = ``"true"``/``"false"``.
    """
    rows: list[Mapping[str, Any]] = []
    malformed: list[str | None] = []
    for record in records:
        if isinstance(record, Mapping):
            rows.append(record)
            malformed.append(None)
        else:
            rows.append({})
            malformed.append((_to_json(record) or "null")[:_MALFORMED_MAX_CHARS])
    if not rows:
        return empty_calls_table(phones_hashed=hash_phone_numbers)
    present, alias_map = _canonical_keys(rows)
    aliases_of: dict[str, list[str]] = {}
    for alias, name in sorted(alias_map.items()):
        aliases_of.setdefault(name, []).append(alias)

    columns: list[pa.Array] = []
    invalid: dict[str, np.ndarray] = {}
    for field in CALLS_SCHEMA:
        name = field.name
        if name == "phonesHashed":
            columns.append(pa.array([hash_phone_numbers] * len(rows), type=pa.bool_()))
            continue
        if name == MALFORMED_RECORD_FIELD:
            columns.append(_text_array(malformed))
            continue
        if name == INVALID_FIELDS_FIELD:
            columns.append(_invalid_fields_column(invalid, len(rows)))
            continue
        if name not in present and name not in aliases_of:
            columns.append(pa.nulls(len(rows), type=field.type))
            continue
        values = _values(rows, name, aliases_of.get(name, []))
        lost = None
        if name in JSON_FIELDS:
            column = _text_array([_to_json(v) for v in values])
        elif name == "callId":
            column, lost = _column(values, pa.int64(), _to_call_id)
        elif name in INT_FIELDS:
            column, lost = _column(values, pa.int64(), _to_int)
        elif name in BOOL_FIELDS:
            column, lost = _column(values, pa.bool_(), _to_bool)
        else:
            column, lost = _column(values, pa.string(), _to_str)
        columns.append(column)
        if lost is not None:
            invalid[name] = lost
    table = pa.Table.from_arrays(columns, schema=CALLS_SCHEMA)
    if hash_phone_numbers:
        table = _hash_phone_columns(table, phone_salt)
    return _with_hash_metadata(table, hash_phone_numbers)


def _invalid_fields_column(invalid: dict[str, np.ndarray], n: int) -> pa.Array:
    """``invalidFields``: per row, the comma-separated fields whose value could not be typed, else null."""
    if not invalid:
        return pa.nulls(n, type=pa.string())
    names = list(invalid)
    stacked = np.vstack([invalid[name] for name in names])
    out: list[str | None] = [None] * n
    for row in np.flatnonzero(stacked.any(axis=0)):
        out[int(row)] = ",".join(name for name, lost in zip(names, stacked[:, row], strict=True) if lost)
    return pa.array(out, type=pa.string())


def _hash_phone_columns(table: pa.Table, salt: str) -> pa.Table:
    for name in ("callerNumber", "redirectNumber"):
        hashed = hash_phones(table.column(name), salt)
        array = pa.array(hashed.to_numpy(dtype=object, na_value=None), type=pa.string())
        table = table.set_column(table.schema.get_field_index(name), name, array)
    return table


def conform_calls_table(data: pa.Table | pd.DataFrame) -> pa.Table:
    """Bring a calls table (or DataFrame) read from anywhere to :data:`CALLS_SCHEMA`.

    Missing columns are added as nulls (``phonesHashed``: from the schema metadata, else false),
    extra columns are dropped, and each column is cast to its type; a column whose values cannot be
    cast exactly (e.g. strings in an integer column) is coerced value by value with the same
    lenient rules as :func:`calls_to_table`. Never raises on content.
    """
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
        table = None
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            table = None
        if table is None:  # mixed object columns: go value by value
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            return _conform_records_frame(records, len(frame))
    else:
        table = data
    metadata_hashed = (table.schema.metadata or {}).get(PHONES_HASHED_METADATA_KEY) == b"true"
    n = table.num_rows
    columns: list[pa.Array | pa.ChunkedArray] = []
    for field in CALLS_SCHEMA:
        if field.name not in table.column_names:
            if field.name == "phonesHashed":
                columns.append(pa.array([metadata_hashed] * n, type=pa.bool_()))
            else:
                columns.append(pa.nulls(n, type=field.type))
            continue
        column = table.column(field.name)
        if column.type.equals(field.type):
            columns.append(column)
            continue
        try:
            if pa.types.is_floating(column.type) and pa.types.is_integer(field.type):
                raise pa.ArrowInvalid("floats: value by value (exact only up to 2^53)")
            columns.append(column.cast(field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            values = column.to_pylist()
            coerce = _coercer(field)
            columns.append(pa.array([coerce(v) for v in values], type=field.type))
    if "phonesHashed" in table.column_names:
        hashed = columns[-1]
        columns[-1] = pc.fill_null(hashed, metadata_hashed)
    result = pa.Table.from_arrays(columns, schema=CALLS_SCHEMA)
    return _with_hash_metadata(result, metadata_hashed or bool(pc.any(result.column("phonesHashed")).as_py()))


def _conform_records_frame(records: list[dict[str, Any]], n: int) -> pa.Table:
    hashed = any(_to_bool(r.get("phonesHashed")) for r in records)
    columns = []
    for field in CALLS_SCHEMA:
        coerce = _coercer(field)
        if field.name == "phonesHashed":
            columns.append(pa.array([bool(_to_bool(r.get(field.name))) for r in records], type=pa.bool_()))
        else:
            columns.append(pa.array([coerce(r.get(field.name)) for r in records], type=field.type))
    return _with_hash_metadata(pa.Table.from_arrays(columns, schema=CALLS_SCHEMA), hashed)


def _coercer(field: pa.Field) -> Callable[[Any], Any]:
    if field.name == "callId":
        return _to_call_id
    if field.name in INT_FIELDS:
        return _to_int
    if field.name in BOOL_FIELDS or field.name == "phonesHashed":
        return _to_bool
    if field.name in JSON_FIELDS:
        return lambda v: v if isinstance(v, str) or v is None else _to_json(v)
    return _to_str
