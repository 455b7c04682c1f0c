"""Benchmark: Calltouch calls extraction throughput against the 5 requests/s ceiling.

Starts its own sandbox (``python -m sandbox`` on a free loopback port), gives every API response a
latency (default 1 s), and extracts N days x M calls with :class:`CalltouchHook` twice in the same run:

* **baseline**: one request at a time (``max_in_flight=1``), what a naive page loop achieves;
* **concurrent**: the hook as shipped (pages 2..N of each day and the days themselves in flight
  together, paced by the process-wide sliding-window limiter), consumed day by day with
  ``iter_calls_by_day`` as the extract operator does.

It prints two rates against the 5 requests/s ceiling, both computed from the same run:

* **overall** (the headline, and what ``--min-ratio`` checks): successful requests / total wall time,
  from the first request's start to the last day's delivery, so it includes the ramp-up (the first
  answers take the full latency) and the tail; the honest end-to-end figure;
* **steady state**: request starts / the span from the first start to the last start, i.e. the pace
  the limiter held while the pipeline was full.

It also prints the most request starts the hook made in any rolling second (by its own clock; must be
<= 5), the 429s seen by the hook and counted by the sandbox, and the requests spent per 1000 calls.
It exits 1 if any request failed for good (or if the calls extracted are not the calls generated) and
2 if the overall rate is below ``--min-ratio`` (default 0.9) of the ceiling.

    .venv/bin/python bench/extract_calls.py                  # 10 days x 20000 calls, 1 s latency
    .venv/bin/python bench/extract_calls.py --days 3 --calls 5000 --latency 0.5
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SITE_ID = 10001
TOKEN = "sandbox-ct-token"
CEILING = 5.0


def _post(url: str, body: dict[str, Any]) -> None:
    import requests

    requests.post(url, json=body, timeout=30).raise_for_status()


def _server_429s(url: str) -> int | str:
    """429s the sandbox answered (its own count), or "?" when the state cannot be read."""
    import requests

    try:
        state = requests.get(f"{url}/_sandbox/state", params={"rows": "false"}, timeout=30).json()
        return int(state["requests"]["by_status"].get("429", 0))
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return "?"


def warm_up(url: str, days: list[date]) -> None:
    """Make the sandbox generate every day once (cheap limit=1 requests), so generation is not measured."""
    import requests

    for day in days:
        while True:
            r = requests.get(
                f"{url}/calls-service/RestAPI/{SITE_ID}/calls-diary/calls",
                params={"clientApiId": TOKEN, "dateFrom": day.strftime("%d/%m/%Y"),
                        "dateTo": day.strftime("%d/%m/%Y"), "page": 1, "limit": 1},
                timeout=120,
            )  # fmt: skip
            if r.status_code != 429:
                r.raise_for_status()
                break
            time.sleep(0.3)
    time.sleep(1.1)  # let the sandbox's rate window empty


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any half-open rolling window ``[t, t + window)`` (``times`` sorted)."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def run(hook_kwargs: dict[str, Any], days: list[date]) -> dict[str, Any]:
    """Extract ``days`` with a fresh hook; return calls, requests, statuses and elapsed time."""
    from calltouch_metrika.hooks.calltouch import CalltouchHook

    hook = CalltouchHook(**hook_kwargs)
    hook.site_id  # noqa: B018 - resolve the connection before the clock starts
    pauses: list[float] = []
    began: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            pauses.append(time.perf_counter() - began.pop())

    gc.callbacks.append(on_gc)
    start = time.perf_counter()
    t0 = time.monotonic()
    # Consume day by day, as CalltouchExtractOperator does (it writes each day's partition and drops
    # it). Holding all N x M records at once, as get_calls() does, makes the client's own garbage
    # collector pause every thread for up to a second on big runs, which is not the API's pace.
    calls, ids = 0, set()
    delivered: list[float] = []
    for _day, records in hook.iter_calls_by_day(days[0], days[-1]):
        delivered.append(time.perf_counter() - start)
        calls += len(records)
        ids.update(c["callId"] for c in records)
        del records
    elapsed = time.perf_counter() - start
    gc.callbacks.remove(on_gc)
    t = hook.transport
    starts = sorted(x - t0 for x in t.limiter.history if x >= t0)
    timeline = [sum(1 for x in starts if i <= x < i + 1) for i in range(math.ceil(elapsed))]
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    return {
        "timeline": timeline,
        "starts": len(starts),
        "start_span": span,
        "max_per_second": max_in_window(starts, 1.0),
        "max_in_flight": hook.max_in_flight,
        "gc_pauses": pauses,
        "delivered": delivered,
        "first_start": starts[0] if starts else 0.0,
        "gaps": sorted((b - a for a, b in itertools.pairwise(starts)), reverse=True)[:8],
        "calls": calls,
        "unique": len(ids),
        "requests": t.requests_sent,
        "ok": t.status_counts.get(200, 0),
        "429": t.status_counts.get(429, 0),
        "elapsed": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=10, help="days to extract (default 10)")
    parser.add_argument("--calls", type=int, default=20000, help="calls per day (default 20000)")
    parser.add_argument(
        "--latency", type=float, default=1.0, help="seconds added to every response (default 1)"
    )
    parser.add_argument("--baseline-days", type=int, default=1, help="days for the one-at-a-time baseline")
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="hook max_in_flight (default: the hook's own, 10)"
    )
    parser.add_argument("--window", type=float, default=1.05, help="hook rate_window (default 1.05 s)")
    parser.add_argument("--verbose", action="store_true", help="print request starts per second")
    parser.add_argument("--min-ratio", type=float, default=0.9,
                        help="exit 2 when the overall rate is below this share of the 5 req/s ceiling "
                             "(default 0.9; 0 disables)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.days < 1 or args.calls < 0 or args.baseline_days < 0:
        parser.error("--days >= 1, --calls >= 0, --baseline-days >= 0")

    home = Path(tempfile.mkdtemp(prefix="ctm-bench-"))
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    sys.path[:0] = [str(REPO / "plugins"), str(REPO)]
    from sandbox import launch

    proc, url = launch.start(home / "sandbox.log")
    try:
        os.environ.update(launch.connection_env(url))
        first = date(2026, 1, 1)
        days = [first + timedelta(days=i) for i in range(args.days)]
        base_days = [first - timedelta(days=i + 1) for i in range(args.baseline_days)][::-1]
        volumes = {f"{SITE_ID}:{d.isoformat()}": args.calls for d in days + base_days}
        budget = 10 * (len(days) + len(base_days)) * (math.ceil(args.calls / 1000) + 1) + 1000
        _post(f"{url}/_sandbox/reset", {"volume_overrides": volumes, "points_budget": max(budget, 1_000_000)})
        warm_up(url, days + base_days)
        _post(f"{url}/_sandbox/faults", {"latency": args.latency, "scope": "calltouch"})

        failures = 0
        baseline = None
        if base_days:
            try:
                baseline = run({"max_in_flight": 1, "timeout": 60 + args.latency}, base_days)
            except Exception as exc:
                failures += 1
                print(f"baseline failed for good: {type(exc).__name__}: {exc}")
            time.sleep(1.1)
        try:
            hook_kwargs: dict[str, Any] = {"rate_window": args.window, "timeout": 60 + args.latency}
            if args.max_in_flight is not None:
                hook_kwargs["max_in_flight"] = args.max_in_flight
            main_run = run(hook_kwargs, days)
        except Exception as exc:
            print(f"concurrent extraction failed for good: {type(exc).__name__}: {exc}")
            return 1
        server_429 = _server_429s(url)
    finally:
        launch.stop(proc)

    expected = args.calls * args.days
    rate = main_run["ok"] / main_run["elapsed"]
    steady = (main_run["starts"] - 1) / main_run["start_span"] if main_run["start_span"] > 0 else 0.0
    print(f"extracted {main_run['calls']} calls ({args.days} days x {args.calls}) in {main_run['ok']} pages, "
          f"latency {args.latency:g} s per response, max_in_flight {main_run['max_in_flight']}, "
          f"rate window {args.window:g} s")  # fmt: skip
    print(f"overall    : {main_run['ok']} OK requests in {main_run['elapsed']:.1f} s wall time (first start to "
          f"last answer) = {rate:.2f} requests/s = {rate / CEILING:.1%} of the {CEILING:g} requests/s ceiling")  # fmt: skip
    print(f"steady     : {main_run['starts']} starts in {main_run['start_span']:.1f} s (first to last start) "
          f"= {steady:.2f} requests/s = {steady / CEILING:.1%} of the ceiling")  # fmt: skip
    print(f"pacing     : at most {main_run['max_per_second']} request starts in any rolling 1 s "
          f"(hook clock; the ceiling is {CEILING:g})")  # fmt: skip
    if baseline:
        base_rate = baseline["ok"] / baseline["elapsed"]
        print(f"baseline   : {baseline['elapsed']:.1f} s for {baseline['ok']} pages one at a time, "
              f"{base_rate:.2f} requests/s -> concurrent is {rate / base_rate:.1f}x faster")  # fmt: skip
    print(f"429s       : {main_run['429']} seen by the hook (all retried), "
          f"{server_429} answered by the sandbox in the whole run")  # fmt: skip
    if args.verbose:
        print(f"starts per second: {main_run['timeline']}")
        print(f"first start at {main_run['first_start']:.2f} s; days delivered at (s): "
              + ", ".join(f"{d:.1f}" for d in main_run["delivered"]))  # fmt: skip
        print("longest gaps between starts (s): " + ", ".join(f"{g:.2f}" for g in main_run["gaps"]))
        gcp = main_run["gc_pauses"]
        print(
            f"client full GC pauses: {len(gcp)}, {sum(gcp):.2f} s in all, longest {max(gcp, default=0):.2f} s"
        )
    per_1000 = 1000 * main_run["requests"] / max(main_run["calls"], 1)
    print(f"requests per 1000 calls: {per_1000:.2f} (the floor is {1000 / 1000:.2f} with 1000-call pages)")
    if main_run["calls"] != expected or main_run["unique"] != expected:
        print(
            f"FAILED: expected {expected} distinct calls, got {main_run['calls']} ({main_run['unique']} distinct)"
        )
        return 1
    if failures:
        return 1
    if args.min_ratio and rate / CEILING < args.min_ratio:
        print(f"BELOW TARGET: overall {rate / CEILING:.1%} < {args.min_ratio:.0%}")
        return 2
    if args.min_ratio:
        print(f"OK: overall {rate / CEILING:.1%} >= {args.min_ratio:.0%} of the ceiling, no request failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
