"""The sandbox's mutable state: config, faults, what was received, counters and rate limiters.

One :class:`SandboxState` lives on ``app.state.sandbox``. The server runs one event loop in one
thread, so plain Python structures are enough (no locks): handlers never await while mutating.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.config import Faults, SandboxConfig, merged_config
from sandbox.generators import CallsCache
from sandbox.render import RenderedCalls

METRIKA_STEPS = ("PREPARED", "UPLOADED", "EXPORTED", "MATCHED")
#: Metrika links a call to a visit at most this long before the upload (seed 000, api-notes §3.3).
JOIN_WINDOW = timedelta(days=21)
#: After calls accounting is switched on, uploads link only after about a day (the calls guide, §3.3).
JOIN_READY_AFTER = timedelta(days=1)


class SlidingWindow:
    """At most ``limit`` admitted events per key within any sliding ``window`` seconds.

    Rejected events are not recorded, so a client hammering the limit is not locked out longer.
    """

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._events: dict[str, deque[float]] = {}

    def has_room(self, key: str, limit: int, now: float) -> bool:
        """Whether one more event for ``key`` would be admitted at ``now`` (records nothing)."""
        q = self._events.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return len(q) < limit

    def admit(self, key: str, limit: int, now: float) -> bool:
        """Record an event for ``key`` if there is room; return whether it was admitted."""
        if not self.has_room(key, limit, now):
            return False
        self._events[key].append(now)
        return True


@dataclass
class Upload:
    """One Metrika calls upload as received (rows kept as the strings sent)."""

    id: int
    counter_id: int
    comment: str | None
    new_goal_name: str | None
    client_id_type: str
    create_time: str
    created_monotonic: float
    source_quantity: int
    line_quantity: int
    static_calls_quantity: int
    dynamic_calls_quantity: int
    columns: list[str]
    rows: list[dict[str, str]]
    linked_quantity: int

    @property
    def linked(self) -> bool:
        """Whether any valid row linked to a visit (else the upload ends in LINKAGE_FAILURE)."""
        return self.linked_quantity > 0

    def status(self, step_seconds: float, now: float) -> str:
        """Status computed lazily from the time since creation (no background tasks)."""
        final = "PROCESSED" if self.linked else "LINKAGE_FAILURE"
        if step_seconds <= 0:
            return final
        step = int((now - self.created_monotonic) / step_seconds)
        return METRIKA_STEPS[step] if step < len(METRIKA_STEPS) else final

    def api_view(self, step_seconds: float, now: float) -> dict[str, Any]:
        """The ``OfflineCallsUploading`` object as Metrika returns it."""
        return {
            "id": self.id,
            "create_time": self.create_time,
            "source_quantity": self.source_quantity,
            "line_quantity": self.line_quantity,
            "comment": self.comment,
            "client_id_type": self.client_id_type,
            "status": self.status(step_seconds, now),
            "static_calls_quantity": self.static_calls_quantity,
            "dynamic_calls_quantity": self.dynamic_calls_quantity,
            "linked_quantity": self.linked_quantity,
        }


@dataclass
class PlansImport:
    """One Calltouch plans import (``plans-import/add``)."""

    id: int
    site_id: int
    items: list[Any]
    created_monotonic: float
    ends_in_error: bool

    def status(self, in_progress_seconds: float, now: float) -> str:
        """``in progress...`` for the configured time, then ``success`` (or ``error`` by fault)."""
        if now - self.created_monotonic < in_progress_seconds:
            return "in progress..."
        return "error" if self.ends_in_error else "success"


@dataclass
class Counters:
    """Request counters reported by ``GET /_sandbox/state``."""

    total: int = 0
    by_api: dict[str, int] = field(default_factory=lambda: {"calltouch": 0, "metrika": 0})
    by_status: dict[str, int] = field(default_factory=dict)
    by_endpoint: dict[str, int] = field(default_factory=dict)
    #: arrival times (epoch seconds) of the last 100,000 Calltouch requests, as the rate limit clocks them
    calltouch_times: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class SandboxState:
    """Everything the sandbox remembers between requests."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self.calls_cache = CallsCache()
        self.rendered_calls = RenderedCalls(self.calls_cache)
        #: per (day, selection, bounds): how many calls a calls-diary request selects (sandbox.calltouch)
        self.day_counts: OrderedDict[Any, int] = OrderedDict()
        #: request records the requests journal generated so far (cumulative); for GET /_sandbox/state
        self.requests_generated = 0
        self.reset(overrides or {})

    def remember_day_count(self, key: Any, count: int, size: int = 200_000) -> None:
        """Keep a day's selected-calls count (pure in its key, so it survives resets); bounded LRU."""
        self.day_counts[key] = count
        while len(self.day_counts) > size:
            self.day_counts.popitem(last=False)

    def reset(self, overrides: dict[str, Any]) -> None:
        """Forget everything; config = defaults + ``overrides`` (validated first, so a bad reset changes nothing)."""
        config = merged_config(None, overrides)
        self.config: SandboxConfig = config
        self.faults: Faults = Faults()
        self.fault_rng = random.Random(f"{config.seed}:faults")
        self.uploads: list[Upload] = []
        self.plans: list[PlansImport] = []
        self.next_upload_id = 1
        self.next_plans_id = 1
        self.counters = Counters()
        self.points_spent = 0
        self.points_day: str | None = None
        self.calltouch_window = SlidingWindow()
        self.metrika_window = SlidingWindow()
        self.metrika_in_flight: dict[str, int] = {}
        self.metrika_daily_day: str | None = None
        self.metrika_daily_used: dict[str, int] = {}
        #: the latest (at most 20) unhandled exceptions: ``{"method", "path", "error"}`` (sandbox.middleware)
        self.internal_errors: list[dict[str, str]] = []

    def configure(self, overrides: dict[str, Any]) -> None:
        """Update the config in place, keeping everything received."""
        self.config = merged_config(self.config, overrides)

    def set_faults(self, faults: dict[str, Any]) -> None:
        """Replace the active faults (``{}`` clears them)."""
        self.faults = Faults.model_validate(faults)
        self.fault_rng = random.Random(f"{self.config.seed}:faults")

    # ----------------------------------------------------------------------------- points
    def _points_today(self) -> None:
        from zoneinfo import ZoneInfo

        today = self.config.clock().astimezone(ZoneInfo(self.config.site_timezone)).date().isoformat()
        if today != self.points_day:
            self.points_day = today
            self.points_spent = 0

    def points_exhausted(self) -> bool:
        """Whether today's Calltouch points budget is used up."""
        self._points_today()
        return self.points_spent >= self.config.points_budget

    def spend_point(self) -> None:
        """Charge one point for a successful Calltouch request."""
        self._points_today()
        self.points_spent += 1

    # ----------------------------------------------------------------------------- Metrika daily quota
    def _metrika_today(self) -> None:
        today = self.config.clock().astimezone(UTC).date().isoformat()  # resets at 00:00 GMT
        if today != self.metrika_daily_day:
            self.metrika_daily_day = today
            self.metrika_daily_used = {}

    def metrika_daily_exhausted(self, token: str) -> bool:
        """Whether ``token`` has used today's ``metrika_daily_quota`` (``quota_requests_by_uid``)."""
        self._metrika_today()
        return self.metrika_daily_used.get(token, 0) >= self.config.metrika_daily_quota

    def spend_metrika_request(self, token: str) -> None:
        """Count one admitted Metrika request of ``token`` against today's quota."""
        self._metrika_today()
        self.metrika_daily_used[token] = self.metrika_daily_used.get(token, 0) + 1

    def metrika_quota_reset(self) -> datetime:
        """When the daily per-user quota resets: the next 00:00 GMT by the sandbox clock."""
        today = self.config.clock().astimezone(UTC).date()
        return datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)

    # ----------------------------------------------------------------------------- calls accounting
    def join_threshold(self, counter_id: int) -> datetime | None:
        """The earliest time a call can be linked to a visit on ``counter_id``; None when accounting is off.

        ``max(now - 21 days, enabled_at + 1 day)``: the window opens about a day after calls accounting is
        switched on and then grows by a day a day up to 21 days (sandbox/README.md, "Calls accounting").
        """
        now = self.config.clock()
        floor = now - JOIN_WINDOW
        acc = self.config.calls_accounting.get(str(counter_id))
        if acc is None:
            return floor
        if not acc.enabled:
            return None
        enabled_at = acc.enabled_at
        if enabled_at is None and acc.enabled_days_ago is not None:
            enabled_at = now - timedelta(days=acc.enabled_days_ago)
        return floor if enabled_at is None else max(floor, enabled_at + JOIN_READY_AFTER)

    def set_calls_accounting(self, counter_id: int, enabled: bool) -> None:
        """Switch calls accounting on (from now, unless already on) or off for ``counter_id``."""
        current = self.config.calls_accounting.get(str(counter_id))
        if enabled and (current is None or current.enabled):
            return
        entry: dict[str, Any] = {"enabled": False}
        if enabled:
            entry = {"enabled": True, "enabled_at": self.config.clock()}
        accounting = {k: v.model_dump() for k, v in self.config.calls_accounting.items()}
        accounting[str(counter_id)] = entry
        self.configure({"calls_accounting": accounting})

    # ----------------------------------------------------------------------------- views
    def snapshot(self) -> dict[str, Any]:
        """The ``GET /_sandbox/state`` document (docs/design.md)."""
        now = time.monotonic()
        cfg = self.config
        self._points_today()
        self._metrika_today()
        return {
            "uploads": [
                {
                    "id": u.id,
                    "counter_id": u.counter_id,
                    "comment": u.comment,
                    "new_goal_name": u.new_goal_name,
                    "client_id_type": u.client_id_type,
                    "status": u.status(cfg.status_step_seconds, now),
                    "source_quantity": u.source_quantity,
                    "line_quantity": u.line_quantity,
                    "static_calls_quantity": u.static_calls_quantity,
                    "dynamic_calls_quantity": u.dynamic_calls_quantity,
                    "linked_quantity": u.linked_quantity,
                    "create_time": u.create_time,
                    "columns": u.columns,
                    "rows": u.rows,
                }
                for u in self.uploads
            ],
            "plans_imports": [
                {
                    "id": p.id,
                    "site_id": p.site_id,
                    "items": p.items,
                    "status": p.status(cfg.plans_in_progress_seconds, now),
                }
                for p in self.plans
            ],
            "requests": {
                "total": self.counters.total,
                "by_api": dict(self.counters.by_api),
                "by_status": dict(self.counters.by_status),
                "by_endpoint": dict(self.counters.by_endpoint),
                "calltouch_times": list(self.counters.calltouch_times),
            },
            "points": {"budget": cfg.points_budget, "spent": self.points_spent},
            "calls_cache": {
                "days_generated": self.calls_cache.generated,
                "days_rendered": self.rendered_calls.built,
            },
            "requests_journal": {"requests_generated": self.requests_generated},
            "metrika_quota": {"daily": cfg.metrika_daily_quota, "used": dict(self.metrika_daily_used)},
            "internal_errors": list(self.internal_errors),
            "config": cfg.model_dump(mode="json"),
            "faults": self.faults.model_dump(),
        }


def iso_utc(dt: datetime) -> str:
    """``2022-12-29T18:02:01Z`` (Metrika's create_time format)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
