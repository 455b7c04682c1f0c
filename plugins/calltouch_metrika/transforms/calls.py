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
TalkDuration   ``duration`` (seconds); empty when missing (an unreadable one rejects the call).
HoldDuration   ``waitingConnect`` (seconds); empty when missing.
CallMissed     0 if ``successful`` else 1; empty when ``successful`` is missing.
Tag            the call tag names (``callTags[].names`` flattened, blanks dropped, duplicates dropped, first
               occurrence order) joined with ``", "``; empty without tags or with ``include_tags=False``.
               Control and invisible characters (Cc, Cf, Zl, Zp, Co, Cn: NUL, U+200B, U+FEFF, U+2028,
               bidi overrides, ...) removed (tab/line breaks kept), cut to 1,000 characters
               (:mod:`.call_values`).
FirstTimeCaller 1 if ``uniqueCall`` else 0; empty when missing.
URL            ``callUrl``, else ``url``; empty when both are missing or blank. Every control and
               invisible character (Cc, Cf, Zl, Zp, Co) is removed; a URL over 2,048 characters is
               dropped (not cut).
CallTrackerURL ``call_tracker_url_template`` formatted with ``site_id`` and ``call_id``.
============== ===========================================================================================

Reason codes (each rejected call gets the FIRST that applies, in this order):

* ``malformed_record``: the page item was not a JSON object (``null``, ``[]``, ``"str"``, ``123``;
  :func:`~calltouch_metrika.transforms.records.calls_to_table` keeps it as a ``malformedRecord`` row);
* ``invalid_call_id``: ``callId`` missing or not exactly a positive integer: a float beyond 2^53 (digits
  lost, two calls could collapse into one), digits other than ASCII (``"１２３"``), ``"1_000"``, ``"1e3"``,
  zero or negative (such a call cannot be traced or deduplicated);
* ``duplicate_call``: the same ``callId`` appeared earlier in the input (the first one is kept);
* ``missing_identifier``: the identifier field is null, blank, or a placeholder (``null``, ``None``,
  ``undefined``, ``<не указано>``, ``(not set)``);
* ``invalid_identifier``: the identifier contains a control or invisible character (categories Cc, Cf,
  Zl, Zp, Co: NUL, U+200B, U+FEFF, U+2028, ...), or is longer than 255 characters, or (``ClientId``/
  ``Yclid``, both uint64 in Metrika) is not made of 1-20 ASCII digits without a leading zero (``"0"``,
  ``"00000000000000000001"``) or exceeds 2^64-1 = 18446744073709551615. A ``yaClientId`` that arrived as a JSON float beyond 2^53 (digits
  lost) stays in exponent form in the extract and is rejected here too;
* ``invalid_timestamp``: no usable time: ``timestamp`` missing/non-integer/<= 0 and ``date`` missing or
  not ``dd/mm/yyyy HH:MM:SS`` naming a real moment (``31/11/2026`` or ``24:00:00`` is refused, not
  rolled over);
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
* ``invalid_duration``: ``duration`` or ``waitingConnect`` is present but not an integer number of
  seconds from 0 to :data:`MAX_DURATION_SECONDS` (one day): ``10**30``, ``30.7``, ``"abc"``, ``true``
  (the extract names such a field in ``invalidFields``). Chosen over uploading the call with an empty
  TalkDuration: a value we cannot read is never silently dropped, and the reject keeps it visible;
* ``invalid_call_tags``: (``include_tags``) ``callTags`` is present but is no tag groups: a number, a
  boolean, or text that starts like JSON (``[``/``{``) and does not parse. JSON text of tag groups is
  parsed; a plain string is one tag name;
* ``invalid_price``: (``orders`` mode) an order amount that is not a finite, non-negative number, or a
  total of 10^15 or more.

Where the rest lives: the options, counts and result shapes in :mod:`.calls_model`; value helpers
(JSON fields, text cleaning) in :mod:`.call_values`; the CSV serialiser in :mod:`.metrika_csv`;
batch-by-batch streaming in :mod:`.calls_stream`.

Pure: no I/O, no network, no Airflow import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from calltouch_metrika.transforms.call_values import (
    INVALID,
    TAGS_INVALID,
    bools,
    clean_urls,
    ints,
    map_distinct,
    map_distinct_array,
    np_mask,
    orders_amount,
    tag_text,
)
from calltouch_metrika.transforms.calls_model import (
    DEFAULT_CALL_TRACKER_URL_TEMPLATE,
    REASONS,
    REJECTS_COLUMNS,
    REJECTS_SCHEMA,
    CallsCounts,
    CallsTransformResult,
    ReconciliationError,
    TransformOptions,
    empty_rejects,
    upload_columns,
    upload_schema,
)
from calltouch_metrika.transforms.metrika_csv import (
    IDENTIFIERS,
    METRIKA_COLUMN_TYPES,
    blank_to_null,
    metrika_client_id_type,
    metrika_csv_bytes,
    write_metrika_csv,
)
from calltouch_metrika.transforms.phones import normalize_phones
from calltouch_metrika.transforms.records import (
    INVALID_FIELDS_FIELD,
    MALFORMED_RECORD_FIELD,
    PHONES_HASHED_METADATA_KEY,
    conform_calls_table,
)

# calls_to_metrika is defined here; the rest is re-exported so that one import serves a caller.
__all__ = [
    "DEFAULT_CALL_TRACKER_URL_TEMPLATE",
    "IDENTIFIERS",
    "MAX_DURATION_SECONDS",
    "METRIKA_COLUMN_TYPES",
    "REASONS",
    "REJECTS_COLUMNS",
    "REJECTS_SCHEMA",
    "CallsCounts",
    "CallsTransformResult",
    "ReconciliationError",
    "TransformOptions",
    "calls_to_metrika",
    "empty_rejects",
    "metrika_client_id_type",
    "metrika_csv_bytes",
    "upload_columns",
    "write_metrika_csv",
]

_DATE_FORMAT = "%d/%m/%Y %H:%M:%S"
_MS_THRESHOLD = 10**11  # a seconds timestamp this large is year 5138: take it as milliseconds
_PLACEHOLDERS = ("", "null", "none", "undefined", "nan", "<не указано>", "(not set)")
_DIGITS_ID = r"^[1-9][0-9]{0,19}$"  # ClientID and yclid are positive uint64: 1-20 digits, no leading 0 ...
_UINT64_MAX = str(2**64 - 1)  # ... and at most 18446744073709551615
#: RE2: control, format (zero-width, BOM, bidi), line/paragraph separator, private-use characters
_INVISIBLE_RE2 = r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}]"
#: a call longer than a day is not a call (TalkDuration/HoldDuration are seconds)
MAX_DURATION_SECONDS = 86_400
#: ``dd/mm/yyyy HH:MM:SS`` split into its fields, to refuse what strptime would roll over (31/11)
_DATE_FIELDS = r"^\s*(?P<d>[0-9]{1,2})/(?P<m>[0-9]{1,2})/(?P<y>[0-9]{4}) (?P<H>[0-9]{1,2}):(?P<M>[0-9]{1,2}):(?P<S>[0-9]{1,2})\s*$"
_CALL_ID_SENTINEL = "\x00CALL_ID\x00"


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

    # an item of the page that was not a JSON object (records.calls_to_table)
    malformed_col = calls.column(MALFORMED_RECORD_FIELD)
    rej.reject(
        np_mask(pc.is_valid(malformed_col)),
        "malformed_record",
        lambda idx: [f"not a JSON object: {malformed_col[int(i)].as_py()[:80]}" for i in idx],
    )

    # callId: exactly a positive integer (records.calls_to_table leaves lookalikes and inexact floats null)
    call_id, call_id_valid = ints(calls, "callId")
    call_id_valid &= call_id > 0
    rej.reject(
        ~call_id_valid,
        "invalid_call_id",
        "callId is missing or not exactly a positive integer (a float beyond 2^53, digits other than "
        "ASCII, 1_000, 1e3, <= 0)",
    )
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
    missing = np_mask(pc.is_null(identifier)) | np_mask(pc.is_in(lowered, pa.array(_PLACEHOLDERS)))
    rej.reject(missing, "missing_identifier", f"{options.identifier_field} is empty")
    bad_shape = np_mask(pc.match_substring_regex(identifier, _INVISIBLE_RE2)) | np_mask(
        pc.greater(pc.utf8_length(identifier), 255)
    )
    if options.identifier in ("ClientId", "Yclid"):
        bad_shape |= ~np_mask(pc.match_substring_regex(identifier, _DIGITS_ID))
        # 20 digits: compare as text with 2^64-1 (same length, so text order is number order)
        bad_shape |= np_mask(
            pc.and_(pc.equal(pc.utf8_length(identifier), 20), pc.greater(identifier, _UINT64_MAX))
        )
    identifier_list: list[Any] | None = None

    def _identifier_detail(idx: np.ndarray) -> list[str]:
        nonlocal identifier_list
        if identifier_list is None:
            identifier_list = identifier.to_pylist()
        expected = (
            "a positive unsigned 64-bit integer (1-20 digits, no leading zero, at most 18446744073709551615)"
            if options.identifier in ("ClientId", "Yclid")
            else "free of control and invisible characters"
        )
        return [
            f"{options.identifier} {identifier_list[i][:80]!r} is not {expected} (max 255 chars)" for i in idx
        ]

    rej.reject(bad_shape & ~missing, "invalid_identifier", _identifier_detail)

    # DateTime
    ts, ts_valid = ints(calls, "timestamp")
    ts = np.where(ts >= _MS_THRESHOLD, ts // 1000, ts)
    ts_valid &= ts > 0
    date_col = calls.column("date")
    local = pc.strptime(date_col, format=_DATE_FORMAT, unit="s", error_is_null=True)
    aware = pc.assume_timezone(
        local, timezone=options.site_timezone, ambiguous="earliest", nonexistent="earliest"
    )
    date_ts_col = pc.if_else(_date_is_real(date_col, local), pc.cast(aware, pa.int64()), None)
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
    duration, duration_valid = ints(calls, "duration")
    waiting, waiting_valid = ints(calls, "waitingConnect")
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
    invalid_fields = calls.column(INVALID_FIELDS_FIELD)
    untyped_duration = np_mask(
        pc.match_substring_regex(invalid_fields, r"(^|,)(duration|waitingConnect)(,|$)")
    )
    too_long = (duration_valid & (duration > MAX_DURATION_SECONDS)) | (
        waiting_valid & (waiting > MAX_DURATION_SECONDS)
    )
    rej.reject(
        untyped_duration | too_long,
        "invalid_duration",
        lambda idx: [
            f"duration/waitingConnect is not an integer number of seconds from 0 to {MAX_DURATION_SECONDS} "
            f"(untyped: {invalid_fields[int(i)].as_py() or 'none'}; duration "
            f"{duration[i] if duration_valid[i] else None}, waitingConnect "
            f"{waiting[i] if waiting_valid[i] else None})"
            for i in idx
        ],
    )

    # call tags: present but of no usable shape (a number, a boolean, JSON text that is not tags)
    tags: pa.Array | None = None
    if options.include_tags and n:
        tags = map_distinct_array(calls.column("callTags"), tag_text, pa.string())
        bad_tags = np_mask(pc.equal(tags, TAGS_INVALID))
        rej.reject(
            bad_tags,
            "invalid_call_tags",
            lambda idx: [
                f"callTags is not a list of tag groups: {(calls.column('callTags')[int(i)].as_py() or '')[:80]}"
                for i in idx
            ],
        )

    # price
    price_values: list[Any] | None = None
    if options.price_mode == "orders":
        amounts = map_distinct(calls.column("orders"), orders_amount)
        bad_price = np.fromiter((a is INVALID for a in amounts), dtype=bool, count=n)
        rej.reject(
            bad_price, "invalid_price", "an order amount is not a finite non-negative number below 10^15"
        )
        price_values = [None if a is INVALID else a for a in amounts]

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
        tags=tags,
    )
    return CallsTransformResult(
        upload=upload, rejects=rejects, counts=counts, client_id_type=options.client_id_type
    )


def _date_is_real(date_col: pa.ChunkedArray, local: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where the parsed ``date`` has exactly the written fields (``31/11`` or ``24:00`` roll over)."""
    fields = pc.extract_regex(date_col, _DATE_FIELDS)
    same = (
        pa.chunked_array([pa.array([True] * len(date_col))])
        if len(date_col)
        else pa.chunked_array([], pa.bool_())
    )
    for name, part in (
        ("d", pc.day),
        ("m", pc.month),
        ("y", pc.year),
        ("H", pc.hour),
        ("M", pc.minute),
        ("S", pc.second),
    ):
        written = pc.cast(pc.struct_field(fields, name), pa.int64())
        same = pc.and_kleene(same, pc.equal(written, pc.cast(part(local), pa.int64())))
    return pc.fill_null(same, False)


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
    table = pa.table(columns, schema=REJECTS_SCHEMA)
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
    tags: pa.Array | None,
) -> pd.DataFrame:
    selection = pa.array(keep)
    kept = calls.filter(selection)
    m = kept.num_rows
    ids = call_id[keep]
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    out[options.identifier] = identifier.filter(selection)
    out["DateTime"] = pa.array(date_time[keep], type=pa.int64())

    session, session_valid = ints(kept, "sessionId")
    _, ct_valid = ints(kept, "ctClientId")
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

    duration, duration_valid = ints(kept, "duration")
    waiting, waiting_valid = ints(kept, "waitingConnect")
    out["TalkDuration"] = _int_column(duration, duration_valid)
    out["HoldDuration"] = _int_column(waiting, waiting_valid)
    successful, successful_valid = bools(kept, "successful")
    out["CallMissed"] = _int_column((~successful).astype(np.int64), successful_valid)
    if tags is not None and m:
        out["Tag"] = tags.filter(selection)
    else:
        out["Tag"] = pa.nulls(m, type=pa.string())
    unique, unique_valid = bools(kept, "uniqueCall")
    out["FirstTimeCaller"] = _int_column(unique.astype(np.int64), unique_valid)
    out["URL"] = pc.coalesce(
        blank_to_null(clean_urls(kept.column("callUrl"))), blank_to_null(clean_urls(kept.column("url")))
    )
    out["CallTrackerURL"] = _call_tracker_urls(options, ids)

    schema = upload_schema(options)
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
