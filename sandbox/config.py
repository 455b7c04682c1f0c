"""Sandbox configuration and fault settings (validated with pydantic).

The keys and defaults are the contract in docs/design.md ("Sandbox control API"): tests reset the
sandbox with overrides of these keys, so an unknown key is an error rather than silently ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_CALLTOUCH_TOKEN = "sandbox-ct-token"
DEFAULT_METRIKA_TOKEN = "sandbox-ym-token"
MAX_CALLS_PER_DAY = 100_000

#: Metrika's quota error types (api-notes §3.5, "Types of errors"): each is HTTP 429 with this ``error_type``.
METRIKA_QUOTA_TYPES = (
    "quota_requests_by_ip",
    "quota_parallel_requests",
    "quota_requests_by_uid",
    "quota_delegate_requests",
    "quota_grants_requests",
    "quota_requests_by_counter_id",
)
QuotaType = Literal[
    "quota_requests_by_ip",
    "quota_parallel_requests",
    "quota_requests_by_uid",
    "quota_delegate_requests",
    "quota_grants_requests",
    "quota_requests_by_counter_id",
]


class CallsAccounting(BaseModel):
    """One counter's calls accounting (the extended 21-day linkage period, api-notes §3.3).

    ``enabled`` false: switched off. Otherwise enabled at ``enabled_at`` or ``enabled_days_ago`` days before
    the sandbox clock (whichever is given; neither: long ago, so the threshold is now - 21 days).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    enabled_days_ago: float | None = Field(None, ge=0)
    enabled_at: datetime | None = None

    @field_validator("enabled_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class SandboxConfig(BaseModel):
    """Everything that shapes the sandbox's behaviour; see docs/design.md for each key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int | str = 42
    calls_per_day: int = Field(150, ge=0, le=MAX_CALLS_PER_DAY)
    volume_overrides: dict[str, int] = Field(default_factory=dict)
    requests_per_day: int = Field(40, ge=0, le=9_999)
    calltouch_rps: int = Field(5, ge=1)
    points_budget: int = Field(1_000_000, ge=0)
    metrika_rps: int = Field(30, ge=1)
    metrika_parallel: int = Field(3, ge=1)
    metrika_daily_quota: int = Field(5_000, ge=0)
    calls_accounting: dict[str, CallsAccounting] = Field(default_factory=dict)
    status_step_seconds: float = Field(1.0, ge=0)
    plans_in_progress_seconds: float = Field(1.0, ge=0)
    calltouch_tokens: dict[str, list[int]] = Field(
        default_factory=lambda: {DEFAULT_CALLTOUCH_TOKEN: [10001, 10002]}
    )
    metrika_tokens: dict[str, list[int]] = Field(
        default_factory=lambda: {DEFAULT_METRIKA_TOKEN: [20001, 20002]}
    )
    site_timezone: str = "Europe/Moscow"
    now: datetime | None = None

    @field_validator("volume_overrides")
    @classmethod
    def _check_overrides(cls, value: dict[str, int]) -> dict[str, int]:
        for key, volume in value.items():
            site, sep, day = key.partition(":")
            if not sep or not site.isdigit():
                raise ValueError(f"volume_overrides key {key!r} must look like '<site_id>:<YYYY-MM-DD>'")
            datetime.strptime(day, "%Y-%m-%d")
            if not 0 <= volume <= MAX_CALLS_PER_DAY:
                raise ValueError(f"volume_overrides[{key!r}] must be within 0..{MAX_CALLS_PER_DAY}")
        return value

    @field_validator("calls_accounting")
    @classmethod
    def _check_accounting(cls, value: dict[str, CallsAccounting]) -> dict[str, CallsAccounting]:
        for key in value:
            if not key.isdigit():
                raise ValueError(f"calls_accounting key {key!r} must be a counter id")
        return value

    @field_validator("site_timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        ZoneInfo(value)
        return value

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def volume(self, site_id: int, day_iso: str) -> int:
        """Number of calls generated for ``site_id`` on ``day_iso`` (an override wins)."""
        return self.volume_overrides.get(f"{site_id}:{day_iso}", self.calls_per_day)

    def clock(self) -> datetime:
        """The sandbox's "now" (UTC): the frozen ``now`` if configured, else the wall clock."""
        return self.now.astimezone(UTC) if self.now is not None else datetime.now(UTC)


class Faults(BaseModel):
    """Active faults; counters are decremented by each API request they hit (docs/design.md)."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["calltouch", "metrika", "all"] = "all"
    latency: float = Field(0.0, ge=0)
    fail_5xx: int = Field(0, ge=0)
    fail_5xx_rate: float = Field(0.0, ge=0, le=1)
    burst_429: int = Field(0, ge=0)
    burst_429_type: QuotaType = "quota_requests_by_ip"
    drop_connection: int = Field(0, ge=0)
    truncate_body: int = Field(0, ge=0)
    lose_upload_response: int = Field(0, ge=0)
    garbled_body: int = Field(0, ge=0)
    garbled_endpoint: str | None = None
    internal_error: int = Field(0, ge=0)
    plans_status_error: bool = False
    retry_after: int = Field(1, ge=0)

    def applies_to(self, api: str) -> bool:
        """Whether faults hit requests of ``api`` ("calltouch" or "metrika")."""
        return self.scope in ("all", api)


def merged_config(base: SandboxConfig | None, overrides: dict[str, Any]) -> SandboxConfig:
    """``base`` (or the defaults) with ``overrides`` applied and validated as a whole."""
    data = base.model_dump() if base is not None else {}
    data.update(overrides)
    return SandboxConfig.model_validate(data)
