"""One pipeline's linkage report over the last N local days: what the CLI prints and the page draws.

The payload (JSON-able; the page's data endpoint returns it as is)::

    {"pipeline": "demo", "dag_id": "calltouch_calls_to_metrika__demo", "counter_id": 20001,
     "site_id": 10001, "timezone": "Europe/Moscow", "days": 30, "first": "2026-10-31",
     "last": "2026-11-29", "reasons": ["missing_identifier", ...],
     "totals": {"extracted": .., "uploaded": .., "rejected": .., "linked_quantity": .., "line_quantity": ..,
                "linked_share": ..},
     "rows": [<dataset.daily_rows row>, ...]}           # oldest day first, days with a report only

Counts only: no token, phone number or call identifier is ever part of it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from calltouch_metrika.linkage.dataset import daily_rows, read_rows, window

if TYPE_CHECKING:
    from calltouch_metrika.config import Pipeline, PipelinesConfig

__all__ = ["MAX_DAYS", "calls_pipelines", "pipeline_report"]

#: The longest window the page and the CLI accept (the page offers 30 and 90).
MAX_DAYS = 366


def calls_pipelines(config: PipelinesConfig | None = None) -> list[Pipeline]:
    """Every configured pipeline (each has a calls DAG), in config order."""
    from calltouch_metrika.config import load_config

    return list((config or load_config()).pipelines)


def pipeline_report(pipeline: Pipeline, days: int = 30, *, today: date | None = None) -> dict[str, Any]:
    """The report payload of ``pipeline`` for the ``days`` local days ending yesterday.

    :param today: the local "today" in the pipeline's time zone (default: now there).
    :raises ValueError: ``days`` outside 1..:data:`MAX_DAYS`.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, got {days}")
    today = today or datetime.now(ZoneInfo(pipeline.timezone)).date()
    first, last = window(days, today=today)
    rows = daily_rows(
        read_rows(
            pipeline.storage_root,
            pipeline=pipeline.name,
            counter_id=pipeline.counter_id,
            first=first,
            last=last,
        )
    )
    reasons = sorted({r for row in rows for r in row["rejected_by_reason"]})
    linked = [r["linked_quantity"] for r in rows if r["linked_quantity"] is not None]
    lines = [r["line_quantity"] for r in rows if r["linked_quantity"] is not None and r["line_quantity"]]
    totals = {
        "days_reported": len(rows),
        "extracted": sum(r["extracted"] for r in rows),
        "uploaded": sum(r["uploaded"] for r in rows),
        "rejected": sum(r["rejected"] for r in rows),
        "linked_quantity": sum(linked) if linked else None,
        "line_quantity": sum(lines) if lines else None,
    }
    totals["linked_share"] = (
        totals["linked_quantity"] / totals["line_quantity"] if linked and totals["line_quantity"] else None
    )
    return {
        "pipeline": pipeline.name,
        "dag_id": pipeline.dag_id,
        "counter_id": pipeline.counter_id,
        "site_id": pipeline.site_id,
        "timezone": pipeline.timezone,
        "days": days,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "reasons": reasons,
        "totals": totals,
        "rows": rows,
    }
