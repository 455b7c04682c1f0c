"""Pre-rendered calls: each generated day kept as one JSON text per call, per projection.

Why: a page of 1000 calls is about 1.4 MB of JSON. Projecting and serialising it on every request
took ~45 ms of the single event loop, and while the loop is busy, requests that have already
arrived wait before the middleware timestamps them for the rate limit, so a client pacing itself
correctly could see them clocked closer together than sent (429) and every response took longer
than the configured latency. Now a day is generated and rendered once per *projection* (the
``attribution`` / ``with*`` flags, which change each call's JSON), in a worker thread so the event
loop keeps serving other requests meanwhile; a page is then a slice of cached ``bytes`` joined into
the envelope (~2 ms), and the latency fault is the only real wait. The output is byte for byte what
``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` of the projected records gives.

Everything cached is a pure function of its key, so the cache survives ``/_sandbox/reset``.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from typing import Any

from sandbox.generators import CallsCache, generate_calls

#: Constant fields the ``withText`` / ``withDcm`` / ``withCallbackInfo`` flags add to every call.
EXTRA_FIELDS: dict[str, Any] = {"phrases": [], "phonesInText": [], "dcm": [], "callbackInfo": None}

DayKey = tuple[str, int, date, int, str]  # seed, site_id, day, volume, timezone


@dataclass(frozen=True)
class Projection:
    """How each call is sent: ``attribution`` override, optional blocks, extra constant fields (in order)."""

    attribution: int | None = None
    blocks: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def extra_fields(self) -> dict[str, Any]:
        """The extra fields as added to each call (serialised at once, so sharing the values is safe)."""
        return {name: EXTRA_FIELDS[name] for name in self.extra}


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON, as :class:`sandbox.errors.JSONUtf8Response` renders."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def render_day(
    records: list[dict[str, Any]] | None, key: DayKey, projection: Projection
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Generate the day when ``records`` is None, then render each call as sent. Pure, thread-safe."""
    from sandbox.calltouch import project_call  # the projection rules live with the endpoint

    seed, site_id, day, volume, tz_name = key
    if records is None:
        records = generate_calls(seed, site_id, day, volume, tz_name)
    extra = projection.extra_fields()
    blocks = list(projection.blocks)
    rendered = [dumps(project_call(seed, r, projection.attribution, blocks, extra, tz_name)) for r in records]
    return records, rendered


class RenderedCalls:
    """LRU of ``(records, rendered)`` per day and projection, built off the event loop.

    Concurrent requests for the same day and projection share one build. ``size`` bounds the number
    of (day, projection) entries kept (a 20,000-call day is ~27 MB rendered).
    """

    def __init__(self, calls_cache: CallsCache, size: int = 16) -> None:
        self.calls_cache = calls_cache
        self.size = size
        self._data: OrderedDict[tuple[DayKey, Projection], tuple[list[dict[str, Any]], list[bytes]]] = (
            OrderedDict()
        )
        self._building: dict[tuple[DayKey, Projection], asyncio.Task[Any]] = {}
        #: (day, projection) renders built so far; for GET /_sandbox/state
        self.built = 0

    async def get(self, key: DayKey, projection: Projection) -> tuple[list[dict[str, Any]], list[bytes]]:
        """The day's base records and, aligned with them, each call's JSON for ``projection``."""
        full = (key, projection)
        hit = self._data.get(full)
        if hit is not None:
            self._data.move_to_end(full)
            return hit
        task = self._building.get(full)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._build(full))
            self._building[full] = task
        # shield: a client that disconnects must not cancel a build other requests are waiting for
        return await asyncio.shield(task)

    async def _build(self, full: tuple[DayKey, Projection]) -> tuple[list[dict[str, Any]], list[bytes]]:
        key, projection = full
        try:
            records = self.calls_cache.peek(key)
            if records is None:
                self.calls_cache.generated += 1
            records, rendered = await asyncio.to_thread(render_day, records, key, projection)
            self.built += 1
        finally:
            self._building.pop(full, None)
        self.calls_cache.put(key, records)
        self._data[full] = (records, rendered)
        while len(self._data) > self.size:
            self._data.popitem(last=False)
        return records, rendered
