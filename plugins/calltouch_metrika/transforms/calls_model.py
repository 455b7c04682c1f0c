"""The shapes of the calls transform: its options, reason codes, counts, results and rejects schema.

The rules themselves (which column comes from where, which call is rejected for what, in which
order) are documented and implemented in :mod:`calltouch_metrika.transforms.calls`.

Pure: no I/O, no Airflow import.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd
import pyarrow as pa

from calltouch_metrika.transforms.call_values import CENT, MAX_PRICE, to_decimal
from calltouch_metrika.transforms.metrika_csv import METRIKA_COLUMN_TYPES, metrika_client_id_type
from calltouch_metrika.transforms.records import CALLS_SCHEMA, INVALID_FIELDS_FIELD, MALFORMED_RECORD_FIELD

__all__ = [
    "DEFAULT_CALL_TRACKER_URL_TEMPLATE",
    "PRICE_MODES",
    "REASONS",
    "REJECTS_COLUMNS",
    "REJECTS_SCHEMA",
    "CallsCounts",
    "CallsTransformResult",
    "ReconciliationError",
    "TransformOptions",
    "empty_rejects",
    "upload_columns",
    "upload_schema",
]

DEFAULT_CALL_TRACKER_URL_TEMPLATE = "https://my.calltouch.ru/accounts/{site_id}/calls-log?callId={call_id}"

PRICE_MODES = ("none", "fixed", "orders")

#: reason code -> what it means (see the module docstring for the exact rules and their order)
REASONS: dict[str, str] = {
    "malformed_record": "the item of the calls page is not a JSON object",
    "invalid_call_id": "callId missing or not exactly a positive integer",
    "duplicate_call": "the same callId appeared earlier in the input; the first one is kept",
    "missing_identifier": "the identifier field is empty",
    "invalid_identifier": "the identifier has a forbidden shape",
    "invalid_timestamp": "neither timestamp nor date gives a usable time",
    "datetime_mismatch": "timestamp and date (in the site's time zone) disagree",
    "future_datetime": "the call's DateTime is after the upload time",
    "outside_linkage_window": "the call is older than Metrika's linkage window",
    "before_join_threshold": "the call is before the counter's linkage threshold (calls_visit_join_threshold)",
    "negative_duration": "duration or waitingConnect is negative",
    "invalid_duration": "duration or waitingConnect is not an integer number of seconds up to one day",
    "invalid_call_tags": "callTags is present but not tag groups (a number, a boolean, broken JSON text)",
    "invalid_price": "an order amount is not a usable non-negative number",
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
REJECTS_SCHEMA = pa.schema(
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


class ReconciliationError(RuntimeError):
    """``extracted != uploaded + rejected``: a bug in the transform, never a data problem."""


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
        if column not in CALLS_SCHEMA.names or column in (
            "phonesHashed",
            MALFORMED_RECORD_FIELD,
            INVALID_FIELDS_FIELD,
        ):
            raise ValueError(
                f"identifier_field {self.identifier_field!r}: {column!r} is not a calls column "
                f"(one of {', '.join(CALLS_SCHEMA.names[:-3])})"
            )
        if "?" in self.identifier_field and not re.fullmatch(r"[A-Za-z0-9_.\-]+", param):
            raise ValueError(
                f"identifier_field {self.identifier_field!r}: bad query parameter name {param!r}"
            )
        if self.price_mode not in PRICE_MODES:
            raise ValueError(f"price_mode must be one of {PRICE_MODES}, got {self.price_mode!r}")
        if self.price_mode == "fixed":
            price = to_decimal(self.price)
            if price is None or price >= MAX_PRICE:
                raise ValueError(
                    f"price_mode 'fixed' needs a non-negative price below 10^15, got {self.price!r}"
                )
            object.__setattr__(self, "price", price.quantize(CENT, rounding=ROUND_HALF_UP))
        elif self.price is not None:
            object.__setattr__(self, "price", to_decimal(self.price))
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


def upload_schema(options: TransformOptions) -> pa.Schema:
    """The Arrow schema of the CSV for these options (:func:`upload_columns` with their types)."""
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


def empty_rejects() -> pd.DataFrame:
    """A rejects frame (:data:`REJECTS_COLUMNS`, Arrow-backed dtypes) with no rows."""
    return REJECTS_SCHEMA.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
