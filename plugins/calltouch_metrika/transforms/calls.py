"""Calltouch calls table -> the Yandex Metrika offline calls CSV (seed 000) + rejects. Pure and vectorised.

Input: a calls table (:data:`~calltouch_metrika.transforms.records.CALLS_SCHEMA`, e.g. read from the
extract's Parquet) or a DataFrame with those columns. Output (:class:`CallsTransformResult`):

* ``upload``: one row per call to upload, exactly the Metrika CSV columns in seed 000's order
  (:func:`upload_columns`), indexed by the call's ``callId`` (so every row can be traced; the index
  is not written to the CSV);
* ``rejects``: one row per call that cannot be uploaded, with a reason code (:data:`REASONS`), a
  human-readable detail and the raw identifying fields (:data:`REJECTS_COLUMNS`);
* ``counts``: ``extracted == uploaded + rejected`` is checked when counts are built
  (:class:`ReconciliationError` if not).

Column mapping (all decisions documented here are ours; api-notes §3.3 calls them [I]):

============== ===========================================================================================
column         source
============== ===========================================================================================
identifier     ``ClientId`` / ``UserId`` / ``Yclid`` (``TransformOptions.identifier``) from the column
               ``identifier_field`` (default ``yaClientId``); ``"url?yclid"`` takes the ``yclid`` query
               parameter of column ``url``. Surrounding blanks are stripped.
DateTime       UTC unix seconds from ``timestamp`` (values >= 10^11 are taken as milliseconds and
               floored to seconds); if ``timestamp`` is missing, from ``date`` (``dd/mm/yyyy HH:MM:SS``)
               read in ``site_timezone``.
StaticCall     1 when the call has no session (``sessionId`` null or 0 and ``ctClientId`` null), else 0.
Price          ``price_mode="fixed"``: the configured price for every call. ``"orders"``: the sum over
               the call's ``orders`` of each order's ``completedAmount``, else its ``plannedAmount``
               (seed 004's spellings ``realSum`` and ``orderSum``/``sum`` are accepted as the same two
               things); empty when the call has no order with an amount. Rounded half-up to 2 decimals,
               written with a dot and 2 decimals, never an exponent. Column absent when ``"none"``.
Currency       ``TransformOptions.currency`` on rows that have a Price (column absent when ``"none"``).
PhoneNumber    ``callerNumber`` normalised to ``+<country><number>`` (:mod:`.phones`); empty when it is
               missing or not a phone number (the column is optional in Metrika, so a bad number does
               NOT reject the call), and always empty when the stored numbers are hashed.
TalkDuration   ``duration`` (seconds); empty when missing.
HoldDuration   ``waitingConnect`` (seconds); empty when missing.
CallMissed     0 if ``successful`` else 1; empty when ``successful`` is missing.
Tag            the call tag names (``callTags[].names`` flattened, blanks dropped, duplicates dropped, first
               occurrence order) joined with ``", "``; empty without tags or with ``include_tags=False``.
FirstTimeCaller 1 if ``uniqueCall`` else 0; empty when missing.
URL            ``callUrl``, else ``url``; empty when both are missing or blank.
CallTrackerURL ``call_tracker_url_template`` formatted with ``site_id`` and ``call_id``.
============== ===========================================================================================

Reason codes (each rejected call gets the FIRST that applies, in this order):

* ``invalid_call_id``: ``callId`` missing or not an integer (such a call cannot be traced or deduplicated);
* ``duplicate_call``: the same ``callId`` appeared earlier in the input (the first one is kept);
* ``missing_identifier``: the identifier field is null, blank, or a placeholder (``null``, ``None``,
  ``undefined``, ``<не указано>``, ``(not set)``);
* ``invalid_identifier``: the identifier contains a control character, or is longer than 255 characters,
  or (``ClientId``/``Yclid``, both uint64 in Metrika) is not made of 1-20 ASCII digits;
* ``invalid_timestamp``: no usable time: ``timestamp`` missing/non-integer/<= 0 and ``date`` missing or
  not ``dd/mm/yyyy HH:MM:SS``;
* ``datetime_mismatch``: ``timestamp`` and ``date`` (read in ``site_timezone``) disagree by more than
  ``datetime_tolerance_seconds`` (60 s by default; in a repeated local hour at a DST end either
  reading is accepted); a wrongly configured site time zone shows up here as a whole number of hours
  in the detail;
* ``future_datetime``: DateTime is after ``now`` (Metrika refuses conversions in the future);
* ``outside_linkage_window``: DateTime is more than ``linkage_window_days`` (21) days before ``now``:
  seed 000 says Metrika does not link a call whose visit is older than 21 days at upload time, and
  the visit precedes the call;
* ``before_join_threshold``: DateTime is before ``join_threshold``, the counter's linkage threshold
  (``GET …/calls_visit_join_threshold``, api-notes §3.3): while calls accounting grows after being
  switched on, Metrika links no call from before it;
* ``negative_duration``: ``duration`` or ``waitingConnect`` is negative;
* ``invalid_price``: (``orders`` mode) an order amount that is not a finite, non-negative number, or a
  total of 10^15 or more.

Pure: no I/O (except :func:`write_metrika_csv` / :func:`stream_calls_to_metrika_csv` writing to the
sink they are given), no network, no Airflow import.
"""

from __future__ import annotations

import io
import json
import os
import re
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from calltouch_metrika.transforms.phones import normalize_phones
from calltouch_metrika.transforms.records import CALLS_SCHEMA, PHONES_HASHED_METADATA_KEY, conform_calls_table

__all__ = [
    "DEFAULT_CALL_TRACKER_URL_TEMPLATE",
    "IDENTIFIERS",
    "METRIKA_COLUMN_TYPES",
    "REASONS",
    "REJECTS_COLUMNS",
    "CallsCounts",
    "CallsTransformResult",
    "ReconciliationError",
    "StreamedCallsResult",
    "TransformOptions",
    "calls_to_metrika",
    "metrika_client_id_type",
    "metrika_csv_bytes",
    "stream_calls_to_metrika_csv",
    "upload_columns",
    "write_metrika_csv",
]

#: Doubt: the real Calltouch call-card link format is not documented anywhere we could find;
#: this is a plausible call-log link. Override it per pipeline when the real one is known.
DEFAULT_CALL_TRACKER_URL_TEMPLATE = "https://my.calltouch.ru/accounts/{site_id}/calls-log?callId={call_id}"

#: identifier column -> Metrika ``client_id_type``
IDENTIFIERS: dict[str, str] = {"ClientId": "CLIENT_ID", "UserId": "USER_ID", "Yclid": "YCLID"}
PRICE_MODES = ("none", "fixed", "orders")

#: reason code -> what it means (see the module docstring for the exact rules and their order)
REASONS: dict[str, str] = {
    "invalid_call_id": "callId missing or not an integer",
    "duplicate_call": "the same callId appeared earlier in the input; the first one is kept",
    "missing_identifier": "the identifier field is empty",
    "invalid_identifier": "the identifier has a forbidden shape",
    "invalid_timestamp": "neither timestamp nor date gives a usable time",
    "datetime_mismatch": "timestamp and date (in the site's time zone) disagree",
    "future_datetime": "the call's DateTime is after the upload time",
    "outside_linkage_window": "the call is older than Metrika's linkage window",
    "before_join_threshold": "the call is before the counter's linkage threshold (calls_visit_join_threshold)",
    "negative_duration": "duration or waitingConnect is negative",
    "invalid_price": "an order amount is not a usable non-negative number",
}

#: Every Metrika calls CSV column (seed 000 order, identifier first) and the Arrow type written.
METRIKA_COLUMN_TYPES: dict[str, pa.DataType] = {
    "UserId": pa.string(),
    "ClientId": pa.string(),
    "Yclid": pa.string(),
    "DateTime": pa.int64(),
    "StaticCall": pa.int64(),
    "Price": pa.decimal128(20, 2),
    "Currency": pa.string(),
    "PhoneNumber": pa.string(),
    "TalkDuration": pa.int64(),
    "HoldDuration": pa.int64(),
    "CallMissed": pa.int64(),
    "Tag": pa.string(),
    "FirstTimeCaller": pa.int64(),
    "URL": pa.string(),
    "CallTrackerURL": pa.string(),
}
_AFTER_IDENTIFIER = (
    "DateTime",
    "StaticCall",
    "Price",
    "Currency",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "Tag",
    "FirstTimeCaller",
    "URL",
    "CallTrackerURL",
)

#: Columns of the rejects frame. ``identifier`` is the raw value of ``identifier_field``.
REJECTS_COLUMNS: tuple[str, ...] = (
    "callId",
    "reason",
    "detail",
    "identifier",
    "timestamp",
    "date",
    "duration",
    "waitingConnect",
    "sessionId",
    "ctClientId",
    "callerNumber",
)
_REJECTS_SCHEMA = pa.schema(
    [
        ("callId", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("identifier", pa.string()),
        ("timestamp", pa.int64()),
        ("date", pa.string()),
        ("duration", pa.int64()),
        ("waitingConnect", pa.int64()),
        ("sessionId", pa.int64()),
        ("ctClientId", pa.int64()),
        ("callerNumber", pa.string()),
    ]
)

_DATE_FORMAT = "%d/%m/%Y %H:%M:%S"
_MS_THRESHOLD = 10**11  # a seconds timestamp this large is year 5138: take it as milliseconds
_MAX_PRICE = Decimal(10) ** 15
_CENT = Decimal("0.01")
_PLACEHOLDERS = ("", "null", "none", "undefined", "nan", "<не указано>", "(not set)")
_DIGITS_ID = r"^[0-9]{1,20}$"  # ClientID and yclid are uint64: at most 20 digits
_CONTROL = r"[\x00-\x1f\x7f]"
_CALL_ID_SENTINEL = "\x00CALL_ID\x00"


class ReconciliationError(RuntimeError):
    """``extracted != uploaded + rejected``: a bug in the transform, never a data problem."""


def metrika_client_id_type(identifier: str) -> str:
    """Metrika's ``client_id_type`` for an identifier column: ``ClientId`` -> ``CLIENT_ID`` etc."""
    try:
        return IDENTIFIERS[identifier]
    except KeyError:
        raise ValueError(f"identifier must be one of {sorted(IDENTIFIERS)}, got {identifier!r}") from None


def _to_decimal(value: Any) -> Decimal | None:
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


@dataclass(frozen=True, kw_only=True)
class TransformOptions:
    """How one pipeline turns Calltouch calls into Metrika rows. Validated on construction (ValueError).

    :param site_id: the Calltouch site (used in ``CallTrackerURL``).
    :param identifier: Metrika identifier column: ``"ClientId"`` (default), ``"UserId"`` or ``"Yclid"``.
    :param identifier_field: calls column holding it (default ``"yaClientId"``), or ``"<column>?<param>"``
        for a query parameter of a URL column (e.g. ``"url?yclid"``).
    :param price_mode: ``"none"`` (no Price/Currency columns), ``"fixed"`` or ``"orders"``.
    :param price: the price per call for ``"fixed"`` (Decimal, or anything Decimal accepts).
    :param currency: ISO 4217 code, e.g. ``"RUB"``.
    :param include_tags: fill ``Tag`` from the call tags.
    :param site_timezone: IANA zone in which Calltouch writes ``date``.
    :param call_tracker_url_template: ``str.format`` template with ``{site_id}`` and ``{call_id}``;
        ``""`` leaves CallTrackerURL empty.
    :param linkage_window_days: calls older than this (relative to ``now``) are rejected.
    :param join_threshold: the counter's linkage threshold (aware datetime); earlier calls are
        rejected as ``before_join_threshold``. None: no such rule.
    :param default_region: region for phone numbers written in national form.
    :param datetime_tolerance_seconds: allowed disagreement between ``timestamp`` and ``date``.
    """

    site_id: int
    identifier: str = "ClientId"
    identifier_field: str = "yaClientId"
    price_mode: str = "none"
    price: Decimal | None = None
    currency: str = "RUB"
    include_tags: bool = True
    site_timezone: str = "Europe/Moscow"
    call_tracker_url_template: str = DEFAULT_CALL_TRACKER_URL_TEMPLATE
    linkage_window_days: int = 21
    join_threshold: datetime | None = None
    default_region: str = "RU"
    datetime_tolerance_seconds: int = 60

    def __post_init__(self) -> None:
        metrika_client_id_type(self.identifier)
        if isinstance(self.site_id, bool) or not isinstance(self.site_id, int):
            raise ValueError(f"site_id must be an integer, got {self.site_id!r}")
        column, _, param = self.identifier_field.partition("?")
        if column not in CALLS_SCHEMA.names or column == "phonesHashed":
            raise ValueError(
                f"identifier_field {self.identifier_field!r}: {column!r} is not a calls column "
                f"(one of {', '.join(CALLS_SCHEMA.names[:-1])})"
            )
        if "?" in self.identifier_field and not re.fullmatch(r"[A-Za-z0-9_.\-]+", param):
            raise ValueError(
                f"identifier_field {self.identifier_field!r}: bad query parameter name {param!r}"
            )
        if self.price_mode not in PRICE_MODES:
            raise ValueError(f"price_mode must be one of {PRICE_MODES}, got {self.price_mode!r}")
        if self.price_mode == "fixed":
            price = _to_decimal(self.price)
            if price is None or price >= _MAX_PRICE:
                raise ValueError(
                    f"price_mode 'fixed' needs a non-negative price below 10^15, got {self.price!r}"
                )
            object.__setattr__(self, "price", price.quantize(_CENT, rounding=ROUND_HALF_UP))
        elif self.price is not None:
            object.__setattr__(self, "price", _to_decimal(self.price))
        if not re.fullmatch(r"[A-Z]{3}", self.currency or ""):
            raise ValueError(f"currency must be an ISO 4217 code such as 'RUB', got {self.currency!r}")
        try:
            zoneinfo.ZoneInfo(self.site_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"site_timezone {self.site_timezone!r} is not a known IANA time zone") from exc
        if self.call_tracker_url_template:
            try:
                self.call_tracker_url_template.format(site_id=self.site_id, call_id=1)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"call_tracker_url_template {self.call_tracker_url_template!r} may only use "
                    f"{{site_id}} and {{call_id}}: {exc}"
                ) from exc
        if not isinstance(self.linkage_window_days, int) or self.linkage_window_days < 1:
            raise ValueError(
                f"linkage_window_days must be a positive integer, got {self.linkage_window_days!r}"
            )
        if self.join_threshold is not None and (
            not isinstance(self.join_threshold, datetime) or self.join_threshold.utcoffset() is None
        ):
            raise ValueError(f"join_threshold must be a timezone-aware datetime, got {self.join_threshold!r}")
        if not isinstance(self.datetime_tolerance_seconds, int) or self.datetime_tolerance_seconds < 0:
            raise ValueError(
                f"datetime_tolerance_seconds must be a non-negative integer, got {self.datetime_tolerance_seconds!r}"
            )

    @property
    def client_id_type(self) -> str:
        """Metrika's ``client_id_type`` for this identifier."""
        return metrika_client_id_type(self.identifier)


def upload_columns(options: TransformOptions) -> list[str]:
    """The CSV columns for these options, in seed 000's order (Price/Currency only with a price mode)."""
    columns = [options.identifier, *_AFTER_IDENTIFIER]
    if options.price_mode == "none":
        columns = [c for c in columns if c not in ("Price", "Currency")]
    return columns


def _upload_schema(options: TransformOptions) -> pa.Schema:
    return pa.schema([(name, METRIKA_COLUMN_TYPES[name]) for name in upload_columns(options)])


@dataclass(frozen=True)
class CallsCounts:
    """Reconciled counts; constructing one with ``extracted != uploaded + rejected`` raises."""

    extracted: int
    uploaded: int
    rejected: int
    rejects_by_reason: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.extracted != self.uploaded + self.rejected:
            raise ReconciliationError(
                f"calls do not reconcile: extracted {self.extracted} != uploaded {self.uploaded} "
                f"+ rejected {self.rejected}"
            )
        if sum(self.rejects_by_reason.values()) != self.rejected:
            raise ReconciliationError(
                f"rejects by reason {self.rejects_by_reason} do not add up to rejected {self.rejected}"
            )

    def __add__(self, other: CallsCounts) -> CallsCounts:
        reasons = dict(self.rejects_by_reason)
        for reason, n in other.rejects_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + n
        return CallsCounts(
            self.extracted + other.extracted,
            self.uploaded + other.uploaded,
            self.rejected + other.rejected,
            dict(sorted(reasons.items())),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain types, for XCom."""
        return {
            "extracted": self.extracted,
            "uploaded": self.uploaded,
            "rejected": self.rejected,
            "rejects_by_reason": dict(self.rejects_by_reason),
        }

    def summary(self) -> str:
        """One line a person can read in a task log."""
        reasons = ", ".join(f"{r}={n}" for r, n in self.rejects_by_reason.items()) or "none"
        return (
            f"calls extracted={self.extracted} uploaded={self.uploaded} rejected={self.rejected} "
            f"(extracted = uploaded + rejected: OK); rejects by reason: {reasons}"
        )


@dataclass(frozen=True)
class CallsTransformResult:
    """What :func:`calls_to_metrika` returns.

    :ivar upload: Metrika CSV rows (columns :func:`upload_columns`, Arrow-backed dtypes), index ``callId``.
    :ivar rejects: :data:`REJECTS_COLUMNS`, one row per rejected call, input order.
    :ivar counts: reconciled counts.
    :ivar client_id_type: ``CLIENT_ID`` / ``USER_ID`` / ``YCLID`` for the upload request.
    """

    upload: pd.DataFrame
    rejects: pd.DataFrame
    counts: CallsCounts
    client_id_type: str

    @property
    def upload_call_ids(self) -> list[int]:
        """The ``callId`` of each upload row, in row order."""
        return [int(v) for v in self.upload.index]


def _ints(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    column = table.column(name)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return values, valid


def _bools(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    column = table.column(name)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    values = pc.fill_null(column, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
    return values, valid


def _strings(table: pa.Table, name: str) -> pa.ChunkedArray:
    return table.column(name)


def _blank_to_null(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    trimmed = pc.utf8_trim_whitespace(array)
    return pc.if_else(pc.equal(pc.utf8_length(trimmed), 0), pa.scalar(None, pa.string()), trimmed)


def _np_mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _identifier_values(table: pa.Table, options: TransformOptions) -> pa.ChunkedArray:
    column, _, param = options.identifier_field.partition("?")
    values = table.column(column)
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    if param:
        pattern = rf"(?:^|[?&#;]){re.escape(param)}=(?P<value>[^&#;]*)"
        extracted = pc.extract_regex(values, pattern)
        values = pc.struct_field(extracted, "value")
    return values


def _tag_text(text: str | None) -> str | None:
    """``callTags`` JSON -> ``"name1, name2"`` (names flattened, blanks and repeats dropped)."""
    if text is None:
        return None
    try:
        tags = json.loads(text)
    except ValueError:
        return None
    if isinstance(tags, dict):
        tags = [tags]
    if not isinstance(tags, list):
        return None
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
            name_text = str(name).strip()
            if name_text:
                names.setdefault(name_text, None)
    return ", ".join(names) if names else None


_INVALID = object()


def _orders_amount(text: str | None) -> Decimal | object | None:
    """Total amount of a call's ``orders`` JSON; None without amounts; ``_INVALID`` for a bad amount."""
    if text is None:
        return None
    try:
        orders = json.loads(text)
    except ValueError:
        return _INVALID
    if isinstance(orders, dict):
        orders = [orders]
    if not isinstance(orders, list):
        return _INVALID
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
        amount = _to_decimal(raw)
        if amount is None:
            return _INVALID
        total = amount if total is None else total + amount
    if total is not None:
        try:
            total = total.quantize(_CENT, rounding=ROUND_HALF_UP)
        except InvalidOperation:  # too many digits for a price (e.g. 1e+26): not a real amount
            return _INVALID
        if total >= _MAX_PRICE:
            return _INVALID
    return total


def _map_distinct(array: pa.ChunkedArray, func: Any) -> list[Any]:
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


def _map_distinct_array(array: pa.ChunkedArray, func: Any, arrow_type: pa.DataType) -> pa.Array:
    """Like :func:`_map_distinct` but stays in Arrow: map the dictionary, then ``take`` by index."""
    encoded = pc.dictionary_encode(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    mapped = pa.array([func(v) for v in encoded.dictionary.to_pylist()], type=arrow_type)
    return pc.take(mapped, encoded.indices)


class _Rejector:
    """Assigns the first applicable reason to each row and collects details."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)
        self.open = np.ones(n, dtype=bool)

    def reject(self, mask: np.ndarray, code: str, detail: Any) -> None:
        hit = mask & self.open
        if not hit.any():
            return
        self.reason[hit] = code
        if callable(detail):
            self.detail[hit] = detail(np.flatnonzero(hit))
        else:
            self.detail[hit] = detail
        self.open &= ~hit


def calls_to_metrika(
    table: pa.Table | pd.DataFrame,
    options: TransformOptions,
    *,
    now: datetime,
    exclude_call_ids: Iterable[int] | np.ndarray | None = None,
) -> CallsTransformResult:
    """Turn calls into Metrika CSV rows and rejects (see the module docstring for every rule).

    :param table: the calls (any column missing from :data:`CALLS_SCHEMA` is taken as null).
    :param options: the pipeline's :class:`TransformOptions`.
    :param now: the upload time (timezone-aware); calls after it or older than the linkage window
        are rejected.
    :param exclude_call_ids: callIds already handled earlier in the same dataset (streaming by
        batches); calls with these ids are rejected as ``duplicate_call``.
    :return: :class:`CallsTransformResult`. Never raises on bad content; raises ``ValueError`` for a
        naive ``now``, :class:`ReconciliationError` if the counts do not add up (a bug).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(timezone.utc))")
    now_ts = int(now.timestamp())
    calls = conform_calls_table(table)
    phones_hashed = (calls.schema.metadata or {}).get(PHONES_HASHED_METADATA_KEY) == b"true"
    n = calls.num_rows
    rej = _Rejector(n)

    # callId
    call_id, call_id_valid = _ints(calls, "callId")
    rej.reject(~call_id_valid, "invalid_call_id", "callId is missing or not an integer")
    # Only valid ids take part: an invalid (missing) callId must not shadow a real callId 0.
    duplicate = np.zeros(n, dtype=bool)
    duplicate[np.flatnonzero(call_id_valid)] = (
        pd.Series(call_id[call_id_valid]).duplicated(keep="first").to_numpy()
    )
    if exclude_call_ids is not None:
        excluded = (
            np.fromiter(exclude_call_ids, dtype=np.int64)
            if not isinstance(exclude_call_ids, np.ndarray)
            else exclude_call_ids.astype(np.int64, copy=False)
        )
        duplicate |= np.isin(call_id, excluded) & call_id_valid
    rej.reject(
        duplicate, "duplicate_call", lambda idx: [f"callId {call_id[i]} appeared earlier" for i in idx]
    )

    # identifier
    raw_identifier = _identifier_values(calls, options)
    identifier = pc.utf8_trim_whitespace(raw_identifier)
    lowered = pc.utf8_lower(identifier)
    missing = _np_mask(pc.is_null(identifier)) | _np_mask(pc.is_in(lowered, pa.array(_PLACEHOLDERS)))
    rej.reject(missing, "missing_identifier", f"{options.identifier_field} is empty")
    bad_shape = _np_mask(pc.match_substring_regex(identifier, _CONTROL)) | _np_mask(
        pc.greater(pc.utf8_length(identifier), 255)
    )
    if options.identifier in ("ClientId", "Yclid"):
        bad_shape |= ~_np_mask(pc.match_substring_regex(identifier, _DIGITS_ID))
    identifier_list: list[Any] | None = None

    def _identifier_detail(idx: np.ndarray) -> list[str]:
        nonlocal identifier_list
        if identifier_list is None:
            identifier_list = identifier.to_pylist()
        expected = "1-20 digits" if options.identifier in ("ClientId", "Yclid") else "no control characters"
        return [
            f"{options.identifier} {identifier_list[i][:80]!r} is not {expected} (max 255 chars)" for i in idx
        ]

    rej.reject(bad_shape & ~missing, "invalid_identifier", _identifier_detail)

    # DateTime
    ts, ts_valid = _ints(calls, "timestamp")
    ts = np.where(ts >= _MS_THRESHOLD, ts // 1000, ts)
    ts_valid &= ts > 0
    date_col = calls.column("date")
    local = pc.strptime(date_col, format=_DATE_FORMAT, unit="s", error_is_null=True)
    aware = pc.assume_timezone(
        local, timezone=options.site_timezone, ambiguous="earliest", nonexistent="earliest"
    )
    date_ts_col = pc.cast(aware, pa.int64())
    date_valid = date_ts_col.is_valid().to_numpy(zero_copy_only=False)
    date_ts = pc.fill_null(date_ts_col, 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    date_time = np.where(ts_valid, ts, date_ts)
    rej.reject(
        ~ts_valid & ~date_valid,
        "invalid_timestamp",
        "timestamp is missing, not an integer or not positive, and date is not dd/mm/yyyy HH:MM:SS",
    )
    diff = ts - date_ts
    mismatch = ts_valid & date_valid & (np.abs(diff) > options.datetime_tolerance_seconds)
    if mismatch.any():  # a repeated local hour (DST end) has two readings: accept either
        latest = pc.assume_timezone(
            local, timezone=options.site_timezone, ambiguous="latest", nonexistent="latest"
        )
        latest_ts = (
            pc.fill_null(pc.cast(latest, pa.int64()), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        )
        mismatch &= np.abs(ts - latest_ts) > options.datetime_tolerance_seconds
    date_list: list[Any] | None = None

    def _mismatch_detail(idx: np.ndarray) -> list[str]:
        nonlocal date_list
        if date_list is None:
            date_list = date_col.to_pylist()
        return [
            f"timestamp {ts[i]} is {int(diff[i]):+d} s ({diff[i] / 3600:+.2f} h) from date "
            f"{date_list[i]!r} read in {options.site_timezone}"
            for i in idx
        ]

    rej.reject(mismatch, "datetime_mismatch", _mismatch_detail)
    rej.reject(
        date_time > now_ts,
        "future_datetime",
        lambda idx: [f"DateTime {date_time[i]} is after now {now_ts}" for i in idx],
    )
    oldest = now_ts - options.linkage_window_days * 86400
    rej.reject(
        date_time < oldest,
        "outside_linkage_window",
        lambda idx: [
            f"DateTime {date_time[i]} is more than {options.linkage_window_days} days before now {now_ts}"
            for i in idx
        ],
    )

    if options.join_threshold is not None:
        threshold_ts = int(options.join_threshold.timestamp())
        rej.reject(
            date_time < threshold_ts,
            "before_join_threshold",
            lambda idx: [
                f"DateTime {date_time[i]} is before the counter's linkage threshold {threshold_ts} "
                f"({options.join_threshold:%Y-%m-%d %H:%M %Z})"
                for i in idx
            ],
        )

    # durations
    duration, duration_valid = _ints(calls, "duration")
    waiting, waiting_valid = _ints(calls, "waitingConnect")
    negative = (duration_valid & (duration < 0)) | (waiting_valid & (waiting < 0))
    rej.reject(
        negative,
        "negative_duration",
        lambda idx: [
            f"duration {duration[i] if duration_valid[i] else None}, waitingConnect "
            f"{waiting[i] if waiting_valid[i] else None}"
            for i in idx
        ],
    )

    # price
    price_values: list[Any] | None = None
    if options.price_mode == "orders":
        amounts = _map_distinct(calls.column("orders"), _orders_amount)
        bad_price = np.fromiter((a is _INVALID for a in amounts), dtype=bool, count=n)
        rej.reject(
            bad_price, "invalid_price", "an order amount is not a finite non-negative number below 10^15"
        )
        price_values = [None if a is _INVALID else a for a in amounts]

    keep = rej.open
    counts = _counts(n, keep, rej.reason)
    rejects = _rejects_frame(calls, rej, ~keep, raw_identifier)
    upload = _upload_frame(
        calls,
        options,
        keep,
        identifier=identifier,
        date_time=date_time,
        call_id=call_id,
        price_values=price_values,
        phones_hashed=phones_hashed,
    )
    return CallsTransformResult(
        upload=upload, rejects=rejects, counts=counts, client_id_type=options.client_id_type
    )


def _counts(n: int, keep: np.ndarray, reason: np.ndarray) -> CallsCounts:
    rejected_reasons = pd.Series(reason[~keep], dtype=object).value_counts()
    by_reason = {str(k): int(v) for k, v in sorted(rejected_reasons.items())}
    return CallsCounts(
        extracted=n, uploaded=int(keep.sum()), rejected=int((~keep).sum()), rejects_by_reason=by_reason
    )


def _rejects_frame(
    calls: pa.Table, rej: _Rejector, mask: np.ndarray, raw_identifier: pa.ChunkedArray
) -> pd.DataFrame:
    selection = pa.array(mask)
    picked = calls.filter(selection)
    identifier = raw_identifier.filter(selection) if len(raw_identifier) else raw_identifier
    columns = {
        "callId": picked.column("callId"),
        "reason": pa.array(rej.reason[mask].tolist(), type=pa.string()),
        "detail": pa.array(rej.detail[mask].tolist(), type=pa.string()),
        "identifier": identifier,
        "timestamp": picked.column("timestamp"),
        "date": picked.column("date"),
        "duration": picked.column("duration"),
        "waitingConnect": picked.column("waitingConnect"),
        "sessionId": picked.column("sessionId"),
        "ctClientId": picked.column("ctClientId"),
        "callerNumber": picked.column("callerNumber"),
    }
    table = pa.table(columns, schema=_REJECTS_SCHEMA)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _int_column(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.int64(), mask=~valid)


def _upload_frame(
    calls: pa.Table,
    options: TransformOptions,
    keep: np.ndarray,
    *,
    identifier: pa.ChunkedArray,
    date_time: np.ndarray,
    call_id: np.ndarray,
    price_values: list[Any] | None,
    phones_hashed: bool,
) -> pd.DataFrame:
    selection = pa.array(keep)
    kept = calls.filter(selection)
    m = kept.num_rows
    ids = call_id[keep]
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    out[options.identifier] = identifier.filter(selection)
    out["DateTime"] = pa.array(date_time[keep], type=pa.int64())

    session, session_valid = _ints(kept, "sessionId")
    _, ct_valid = _ints(kept, "ctClientId")
    static = (~session_valid | (session == 0)) & ~ct_valid
    out["StaticCall"] = pa.array(static.astype(np.int64))

    if options.price_mode != "none":
        if options.price_mode == "fixed":
            prices = pa.array([options.price] * m, type=METRIKA_COLUMN_TYPES["Price"])
        else:
            assert price_values is not None
            kept_prices = [p for p, k in zip(price_values, keep.tolist(), strict=True) if k]
            prices = pa.array(kept_prices, type=METRIKA_COLUMN_TYPES["Price"])
        out["Price"] = prices
        out["Currency"] = pc.if_else(
            pc.is_valid(prices), pa.scalar(options.currency), pa.scalar(None, pa.string())
        )

    if phones_hashed or bool(pc.any(kept.column("phonesHashed")).as_py() or False):
        out["PhoneNumber"] = pa.nulls(m, type=pa.string())
    else:
        phones = normalize_phones(kept.column("callerNumber"), options.default_region)
        out["PhoneNumber"] = pa.array(phones.array, type=pa.string()) if m else pa.nulls(0, pa.string())

    duration, duration_valid = _ints(kept, "duration")
    waiting, waiting_valid = _ints(kept, "waitingConnect")
    out["TalkDuration"] = _int_column(duration, duration_valid)
    out["HoldDuration"] = _int_column(waiting, waiting_valid)
    successful, successful_valid = _bools(kept, "successful")
    out["CallMissed"] = _int_column((~successful).astype(np.int64), successful_valid)
    if options.include_tags and m:
        out["Tag"] = _map_distinct_array(kept.column("callTags"), _tag_text, pa.string())
    else:
        out["Tag"] = pa.nulls(m, type=pa.string())
    unique, unique_valid = _bools(kept, "uniqueCall")
    out["FirstTimeCaller"] = _int_column(unique.astype(np.int64), unique_valid)
    out["URL"] = pc.coalesce(_blank_to_null(kept.column("callUrl")), _blank_to_null(kept.column("url")))
    out["CallTrackerURL"] = _call_tracker_urls(options, ids)

    schema = _upload_schema(options)
    table = pa.table({name: out[name] for name in schema.names}, schema=schema)
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    frame.index = pd.Index(ids, dtype="int64", name="callId")
    return frame


def _call_tracker_urls(options: TransformOptions, ids: np.ndarray) -> pa.Array:
    if not options.call_tracker_url_template:
        return pa.nulls(len(ids), type=pa.string())
    template = options.call_tracker_url_template.format(site_id=options.site_id, call_id=_CALL_ID_SENTINEL)
    parts = template.split(_CALL_ID_SENTINEL)
    id_text = pc.cast(pa.array(ids, type=pa.int64()), pa.string())
    pieces: list[Any] = [parts[0]]
    for part in parts[1:]:
        pieces.extend([id_text, part])
    if len(pieces) == 1:
        return pa.array([parts[0]] * len(ids), type=pa.string())
    return pc.binary_join_element_wise(*pieces, "")


# --------------------------------------------------------------------------------------------- CSV


class _CountingSink:
    """File-like wrapper that forwards writes to ``target`` and counts the bytes."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.target.write(view)
        self.written += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self.target.flush()

    def tell(self) -> int:
        return self.written

    def close(self) -> None:  # the caller owns the target
        self.closed = True


_WRITE_OPTIONS = pacsv.WriteOptions(
    include_header=True, delimiter=",", eol="\n", quoting_style="needed", quoting_header="none"
)


def _frame_to_metrika_table(frame: pd.DataFrame) -> pa.Table:
    """A Metrika-column frame -> Arrow table with the CSV types (ints stay ints, no ``.0``)."""
    unknown = [c for c in frame.columns if c not in METRIKA_COLUMN_TYPES]
    if unknown:
        raise ValueError(f"not Metrika calls CSV columns: {unknown}; allowed: {list(METRIKA_COLUMN_TYPES)}")
    identifiers = [c for c in frame.columns if c in IDENTIFIERS]
    if len(identifiers) != 1 or "DateTime" not in frame.columns:
        raise ValueError(
            f"the CSV needs exactly one identifier column of {list(IDENTIFIERS)} and DateTime, "
            f"got columns {list(frame.columns)}"
        )
    arrays = []
    for name in frame.columns:
        target = METRIKA_COLUMN_TYPES[name]
        series = frame[name]
        try:
            array = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(
                series.astype(object).where(series.notna(), None).astype(str).where(series.notna(), None)
            )
        if not array.type.equals(target):
            if pa.types.is_string(target) and not (
                pa.types.is_string(array.type)
                or pa.types.is_large_string(array.type)
                or pa.types.is_null(array.type)
            ):
                raise ValueError(f"column {name} must hold text, got {array.type}")
            try:
                array = array.cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"column {name} cannot be written as {target}: {exc}") from exc
        if pa.types.is_string(target):
            array = _blank_to_null(array) if len(array) else array
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=list(frame.columns))


def write_metrika_csv(frame: pd.DataFrame, sink: str | os.PathLike[str] | IO[bytes]) -> int:
    """Write Metrika calls CSV rows (``CallsTransformResult.upload``) and return the bytes written.

    Format: UTF-8, a header row of bare column names, comma separator, ``\\n`` line ends; text
    values are double-quoted with inner quotes doubled (RFC 4180), so commas, quotes and line breaks
    in ``Tag`` or ``URL`` are safe; integers are written as integers (no ``.0``), ``Price`` with a dot
    and 2 decimals; empty and missing values as nothing. The frame's index (``callId``) is not
    written. Uses :func:`pyarrow.csv.write_csv` (perf-notes: ~9x a row-by-row writer).

    :param frame: columns from :data:`METRIKA_COLUMN_TYPES`, exactly one identifier and ``DateTime``.
    :param sink: a path (created/overwritten) or a binary file-like object (left open).
    :raises ValueError: unknown columns, or values that do not fit a column's type.
    """
    table = _frame_to_metrika_table(frame)
    if isinstance(sink, str | os.PathLike):
        with open(sink, "wb") as handle:
            return _write_table(table, handle)
    return _write_table(table, sink)


def _write_table(table: pa.Table, target: IO[bytes]) -> int:
    counting = _CountingSink(target)
    pacsv.write_csv(table, pa.PythonFile(counting, mode="w"), write_options=_WRITE_OPTIONS)
    return counting.written


@dataclass(frozen=True)
class StreamedCallsResult:
    """What :func:`stream_calls_to_metrika_csv` returns: counts, all rejects, CSV bytes written."""

    counts: CallsCounts
    rejects: pd.DataFrame
    bytes_written: int
    client_id_type: str


def stream_calls_to_metrika_csv(
    batches: Iterable[pa.Table | pa.RecordBatch | pd.DataFrame],
    options: TransformOptions,
    *,
    now: datetime,
    sink: str | os.PathLike[str] | IO[bytes],
) -> StreamedCallsResult:
    """Transform calls batch by batch (e.g. Parquet row groups) into one CSV, with bounded memory.

    Same rules and output bytes as :func:`calls_to_metrika` + :func:`write_metrika_csv` on the
    concatenated input (duplicates are detected across batches); a header is written even when
    there are no rows.
    """
    if isinstance(sink, str | os.PathLike):
        with open(sink, "wb") as handle:
            return _stream(batches, options, now=now, target=handle)
    return _stream(batches, options, now=now, target=sink)


def _stream(
    batches: Iterable[pa.Table | pa.RecordBatch | pd.DataFrame],
    options: TransformOptions,
    *,
    now: datetime,
    target: IO[bytes],
) -> StreamedCallsResult:
    counting = _CountingSink(target)
    schema = _upload_schema(options)
    writer = pacsv.CSVWriter(pa.PythonFile(counting, mode="w"), schema, write_options=_WRITE_OPTIONS)
    counts = CallsCounts(0, 0, 0, {})
    rejects: list[pd.DataFrame] = []
    seen: list[np.ndarray] = []
    try:
        for batch in _as_tables(batches):
            excluded = np.concatenate(seen) if seen else None
            result = calls_to_metrika(batch, options, now=now, exclude_call_ids=excluded)
            writer.write_table(_frame_to_metrika_table(result.upload).cast(schema))
            rejected_ids = result.rejects["callId"].dropna().to_numpy(dtype=np.int64)
            seen.append(
                np.unique(np.concatenate([result.upload.index.to_numpy(dtype=np.int64), rejected_ids]))
            )
            counts = counts + result.counts
            if len(result.rejects):
                rejects.append(result.rejects)
    finally:
        writer.close()
    rejects_frame = (
        pd.concat(rejects, ignore_index=True)
        if rejects
        else _REJECTS_SCHEMA.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    )
    return StreamedCallsResult(
        counts=counts,
        rejects=rejects_frame,
        bytes_written=counting.written,
        client_id_type=options.client_id_type,
    )


def _as_tables(
    batches: Iterable[pa.Table | pa.RecordBatch | pd.DataFrame],
) -> Iterator[pa.Table | pd.DataFrame]:
    for batch in batches:
        yield pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch


def metrika_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The CSV of :func:`write_metrika_csv` as bytes (handy for small uploads and tests)."""
    buffer = io.BytesIO()
    write_metrika_csv(frame, buffer)
    return buffer.getvalue()
