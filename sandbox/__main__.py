"""``python -m sandbox --host 127.0.0.1 --port 8765``: serve the emulator in the foreground."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError

from sandbox.app import create_app
from sandbox.config import merged_config
from sandbox.protocol import protocol_class


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the config-shaped ones override the defaults of docs/design.md."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", default=None, help="data seed (default 42)")
    parser.add_argument(
        "--calls-per-day", type=int, default=None, help="calls per site and day (default 150)"
    )
    parser.add_argument(
        "--status-step-seconds",
        type=float,
        default=None,
        help="seconds between Metrika upload status steps (default 1.0)",
    )
    parser.add_argument(
        "--config-json", default=None, help="JSON object of config overrides, e.g. '{\"points_budget\": 500}'"
    )
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides from the options (``--config-json`` first, then the specific flags)."""
    overrides: dict[str, Any] = {}
    if args.config_json:
        loaded = json.loads(args.config_json)
        if not isinstance(loaded, dict):
            raise ValueError("--config-json must be a JSON object")
        overrides.update(loaded)
    if args.seed is not None:
        overrides["seed"] = int(args.seed) if args.seed.lstrip("-").isdigit() else args.seed
    if args.calls_per_day is not None:
        overrides["calls_per_day"] = args.calls_per_day
    if args.status_step_seconds is not None:
        overrides["status_step_seconds"] = args.status_step_seconds
    return overrides


def main(argv: list[str] | None = None) -> int:
    """Validate the options, then serve until interrupted."""
    args = parse_args(argv)
    try:
        overrides = overrides_from(args)
        merged_config(None, overrides)
    except (ValueError, ValidationError) as exc:
        print(f"sandbox: invalid configuration: {exc}", file=sys.stderr)
        return 2
    app = create_app(overrides)
    print(f"sandbox: serving Calltouch and Metrika emulators on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        # httptools + uvloop when installed (both are in requirements.lock), else h11 + asyncio: the
        # faster parser and loop keep arrival timestamps (rate limit) close to the real arrival. The
        # protocol answers unparseable requests in the API's error shape (sandbox/protocol.py).
        http=protocol_class(),
        loop="auto",
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
