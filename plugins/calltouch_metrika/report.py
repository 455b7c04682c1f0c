"""``python -m calltouch_metrika.report --pipeline demo --days 30``: the linkage report as a plain table.

Reads the pipelines file (``$CALLTOUCH_METRIKA_CONFIG`` or ``include/config/pipelines.yaml``) and the
pipeline's storage root; prints one line per reported local day, newest first, then the totals.
``--json`` prints the page's JSON payload instead. Exit status 2 on an unknown pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from calltouch_metrika.linkage.query import MAX_DAYS, pipeline_report

COLUMNS = (
    ("day", 10),
    ("extracted", 9),
    ("uploaded", 8),
    ("rejected", 8),
    ("status", 15),
    ("in_file", 7),
    ("accepted", 8),
    ("linked", 6),
    ("share", 6),
    ("static", 6),
    ("dynamic", 7),
    ("to_final", 8),
    ("rejected by reason", 0),
)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return (
        f"{seconds:.0f}s"
        if seconds < 120
        else f"{seconds / 60:.0f}m"
        if seconds < 7200
        else f"{seconds / 3600:.1f}h"
    )


def table(report: dict[str, Any]) -> str:
    """The report payload as a plain fixed-width table (newest day first) plus a totals line."""
    lines = [
        f"Linkage report: pipeline {report['pipeline']} (site {report['site_id']} -> counter "
        f"{report['counter_id']}), {report['first']}..{report['last']} ({report['timezone']})",
        "  ".join(name.ljust(width) if width else name for name, width in COLUMNS).rstrip(),
    ]
    for r in reversed(report["rows"]):
        cells = [
            r["day"],
            _cell(r["extracted"]),
            f"{r['uploaded_first']}+{r['uploaded_topups']}" if r["uploaded_topups"] else str(r["uploaded"]),
            _cell(r["rejected"]),
            _cell(r["status"]),
            _cell(r["source_quantity"]),
            _cell(r["line_quantity"]),
            _cell(r["linked_quantity"]),
            _share(r["linked_share"]),
            _cell(r["static_calls_quantity"]),
            _cell(r["dynamic_calls_quantity"]),
            _duration(r["seconds_to_final"]),
            ", ".join(f"{k} {v}" for k, v in r["rejected_by_reason"].items()) or "-",
        ]
        lines.append(
            "  ".join(c.ljust(w) if w else c for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()
        )
    if not report["rows"]:
        lines.append("(no reported day in this window: the report is written when a day's upload is final)")
    t = report["totals"]
    lines.append(
        f"total: {t['days_reported']} day(s), extracted {t['extracted']}, uploaded {t['uploaded']}, "
        f"rejected {t['rejected']}, linked {_cell(t['linked_quantity'])} of {_cell(t['line_quantity'])} "
        f"accepted ({_share(t['linked_share'])})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m calltouch_metrika.report", description="The linkage report of one pipeline."
    )
    parser.add_argument("--pipeline", required=True, help="pipeline name in pipelines.yaml")
    parser.add_argument("--days", type=int, default=30, help=f"local days ending yesterday (1..{MAX_DAYS})")
    parser.add_argument("--json", action="store_true", help="print the JSON payload the UI page uses")
    args = parser.parse_args(argv)

    from calltouch_metrika.config import load_config
    from calltouch_metrika.exceptions import ConfigError

    try:
        pipeline = load_config().get_pipeline(args.pipeline)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        # Airflow may log (e.g. while loading plugins) on stdout: keep stdout for the table.
        with contextlib.redirect_stdout(sys.stderr):
            report = pipeline_report(pipeline, args.days)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(report, ensure_ascii=False, indent=1) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
