"""Benchmark: an agency's many pipelines through a real scheduler on PostgreSQL, against Calltouch's ceiling.

One local stack (:mod:`tools.local_airflow`: PostgreSQL, api-server, scheduler, dag-processor,
triggerer, LocalExecutor, the sandbox) holds two groups of pipelines, each its own site and counter:

* **small**: many small sites (default 20 sites x 3 days x 1,000 calls: one page per day);
* **large**: a few large sites (default 4 sites x 3 days x 20,000 calls: 20 pages per day).

Calltouch answers in 1 s (sandbox ``latency`` fault). Each group is backfilled three times in the same
invocation, over different days (same volumes, lookback off: one request per small site and day):

* **today**: one extract task per site and day, the ``calltouch_api`` pool with one slot (every
  Calltouch task one after the other; each paces itself at 5 requests / 1.05 s);
* **shared**: the same pipelines, the pool with ``--slots`` slots (default 4) and every task pacing
  through one shared limiter (``CALLTOUCH_METRIKA_RATE_LIMIT_BACKEND``: a SQLite file; ``--redis``);
* **account**: the same sites as pipelines of one ``account`` (own counters): one account extract task
  per day reads every site concurrently (DAG ``calltouch_account_extract__<group>``, in the pool), and
  each pipeline's extract takes its files.

For each run it prints the wall time (backfill created -> every run finished), the extraction span
(first extract start -> last extract end; for **account**: of the account tasks, which make every
Calltouch request), the Calltouch requests and their rate over that span against the 5 requests/s
ceiling, the floor (requests / 5 per second), 429s, uploads, and where the time went: mean extract
duration, mean wait between an extract being queued and starting, the time no extract was running
inside the span (scheduling gaps), the mean number of extracts running at once, and the tail after the
last extract (the pipelines' extract/upload/wait/report tasks). Ratios compare each run with **today**.

    .venv/bin/python bench/agency.py                          # both groups, today vs 4 shared slots
    .venv/bin/python bench/agency.py --groups large --slots 5 --redis
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.local_airflow.postgres import PostgresCluster, find_postgres_bin  # noqa: E402
from tools.local_airflow.processes import tail  # noqa: E402
from tools.local_airflow.redis import RedisServer, find_redis_server  # noqa: E402
from tools.local_airflow.stack import POOL_NAME, LocalAirflow, free_port  # noqa: E402

CEILING = 5.0  # Calltouch: requests per second per IP (api-notes)
PAGE = 1000


@dataclass
class Group:
    name: str
    sites: int
    calls: int
    first_site: int
    first_counter: int

    def pipelines(self) -> list[tuple[str, int, int]]:
        return [
            (f"{self.name}{i:02d}", self.first_site + i, self.first_counter + i) for i in range(self.sites)
        ]

    def account_pipelines(self) -> list[tuple[str, int, int]]:
        """The same sites as pipelines of account ``self.name`` (counters 1,000 higher)."""
        return [
            (f"{self.name}_acct{i:02d}", self.first_site + i, self.first_counter + 1000 + i)
            for i in range(self.sites)
        ]

    @property
    def account_dag(self) -> str:
        return f"calltouch_account_extract__{self.name}"

    @property
    def pages_per_day(self) -> int:
        return max(1, -(-self.calls // PAGE))


def dag_id(pipeline: str) -> str:
    return f"calltouch_calls_to_metrika__{pipeline}"


def parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def write_pipelines(path: Path, data_dir: Path, groups: list[Group]) -> None:
    tomorrow = date.today() + timedelta(days=1)
    lines = ["pipelines:"]
    for g in groups:
        for (name, site, counter), account in [(p, None) for p in g.pipelines()] + [
            (p, g.name) for p in g.account_pipelines()
        ]:
            lines += [
                f"  - name: {name}",
                f"    site_id: {site}",
                f"    counter_id: {counter}",
                "    timezone: Europe/Moscow",
                '    schedule: "0 5 * * *"',
                f"    start_date: {tomorrow.isoformat()}",
                f"    storage_root: {data_dir}",
                f"    pool: {POOL_NAME}",
                "    retries: 0",
                "    status_poll_seconds: 2",
                "    status_timeout_hours: 1",
                "    lookback_days: 0",
            ]
            lines += [f"    account: {account}", "    account_wait_minutes: 30"] if account else []
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


LABELS = ("today", "shared", "account")


def day_sets(days: int) -> dict[str, list[date]]:
    """Three disjoint sets of recent past days (inside Metrika's 21-day linkage window)."""
    newest = date.today() - timedelta(days=2)
    last = [newest - timedelta(days=i) for i in range(days - 1, -1, -1)]
    return {label: [d - timedelta(days=days * k) for d in last] for k, label in enumerate(reversed(LABELS))}


def api(stack: LocalAirflow, method: str, path: str, *, token: str, **kwargs: Any) -> Any:
    """The REST API, patient: on this shared 2-core machine the api-server (one worker, also serving the
    tasks' Execution API) can take more than 30 s to answer under load. A POST that timed out but was
    carried out comes back as 409 on the retry, which counts as done."""
    import requests

    for attempt in range(6):
        try:
            r = requests.request(
                method,
                f"{stack.api_url}/api/v2{path}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
                **kwargs,
            )
        except (requests.Timeout, requests.ConnectionError):
            if attempt == 5:
                raise
            time.sleep(5)
            continue
        if r.status_code == 409 and method == "POST" and attempt:
            return None
        if not r.ok:
            raise SystemExit(f"{method} {path} -> {r.status_code}: {r.text[:1000]}")
        return r.json() if r.content else None
    return None


def wait_backfills_done(stack: LocalAirflow, token: str, dag: str, timeout: float = 300) -> None:
    """Airflow refuses a backfill while another one of the DAG runs (409): the scheduler marks a
    backfill complete a little after its last run ends."""
    deadline = time.time() + timeout
    while True:
        body = api(stack, "GET", "/backfills", token=token, params={"dag_id": dag, "limit": 100})
        if all(b.get("completed_at") for b in body["backfills"]):
            return
        if time.time() > deadline:
            raise SystemExit(f"{dag}: a backfill is still running after {timeout:.0f} s")
        time.sleep(3)


def sandbox_state(stack: LocalAirflow) -> dict[str, Any]:
    import requests

    r = requests.get(f"{stack.sandbox_url}/_sandbox/state", params={"rows": "false"}, timeout=120)
    r.raise_for_status()
    return r.json()


def run_group(
    stack: LocalAirflow, token: str, g: Group, days: list[date], slots: int, label: str
) -> dict[str, Any]:
    """Set the pool, backfill every pipeline of ``g`` (for ``account``: the account DAG first, then its
    pipelines) over ``days``, wait, and measure."""
    api(
        stack,
        "PATCH",
        f"/pools/{POOL_NAME}",
        token=token,
        params={"update_mask": "slots"},
        json={"pool": POOL_NAME, "slots": slots, "include_deferred": False},
    )
    before = sandbox_state(stack)
    uploads_before = {u["id"] for u in before["uploads"]}
    account = label == "account"
    members = g.account_pipelines() if account else g.pipelines()
    dags = ([g.account_dag] if account else []) + [dag_id(name) for name, _, _ in members]
    earlier = {
        d: {
            r["dag_run_id"]
            for r in api(stack, "GET", f"/dags/{d}/dagRuns", token=token, params={"limit": 100})["dag_runs"]
        }
        for d in dags
    }
    t0 = time.time()
    for d in dags:
        wait_backfills_done(stack, token, d)
        api(
            stack,
            "POST",
            "/backfills",
            token=token,
            json={
                "dag_id": d,
                "from_date": f"{days[0].isoformat()}T00:00:00+03:00",  # local days (LocalDayTimetable, MSK)
                "to_date": f"{days[-1].isoformat()}T00:00:00+03:00",
                "max_active_runs": len(days),
            },
        )
    expected = len(dags) * len(days)
    while True:
        runs = {
            d: [
                r
                for r in api(stack, "GET", f"/dags/{d}/dagRuns", token=token, params={"limit": 100})[
                    "dag_runs"
                ]
                if r["dag_run_id"] not in earlier[d]
            ]
            for d in dags
        }
        finished = [r for rs in runs.values() for r in rs if r["state"] in ("success", "failed")]
        if len(finished) >= expected:
            break
        if time.time() - t0 > 3600:
            raise SystemExit(
                f"{label}: runs not finished after an hour\n{tail(stack.home / 'scheduler.log', 20)}"
            )
        time.sleep(5)  # light polling: the api-server also serves the tasks
    t1 = max(parse_ts(r["end_date"]) or time.time() for r in finished)
    failed = [r["dag_run_id"] for r in finished if r["state"] != "success"]

    extracts: list[dict[str, Any]] = []
    # the tasks making the Calltouch requests: the account's, or each pipeline's own extract
    for d in [g.account_dag] if account else dags:
        for r in runs[d]:
            tis = api(stack, "GET", f"/dags/{d}/dagRuns/{r['dag_run_id']}/taskInstances", token=token)
            extracts += [ti for ti in tis["task_instances"] if ti["task_id"] == "extract"]
    spans = [
        (parse_ts(t["start_date"]), parse_ts(t["end_date"]))
        for t in extracts
        if t["start_date"] and t["end_date"]
    ]
    spans = [(a, b) for a, b in spans if a is not None and b is not None]
    queued = [
        parse_ts(t["start_date"]) - parse_ts(t["queued_when"])  # type: ignore[operator]
        for t in extracts
        if t.get("queued_when") and t.get("start_date")
    ]
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    span = last - first
    after = sandbox_state(stack)
    times = [t for t in after["requests"]["calltouch_times"] if t >= t0 - 1]
    requests_n = len(times)
    statuses_before = before["requests"]["by_status"]
    statuses_after = after["requests"]["by_status"]
    too_many = statuses_after.get("429", 0) - statuses_before.get("429", 0)
    uploads = [u for u in after["uploads"] if u["id"] not in uploads_before]
    busy = union_length(spans)
    durations = [b - a for a, b in spans]
    return {
        "label": label,
        "group": g.name,
        "slots": slots,
        "pipelines": len(dags),
        "days": len(days),
        "runs": expected,
        "failed": failed,
        "wall_s": t1 - t0,
        "extract_span_s": span,
        "requests": requests_n,
        "expected_requests": len(members) * len(days) * g.pages_per_day,
        "rate": requests_n / span if span else 0.0,
        "ceiling_pct": 100 * requests_n / span / CEILING if span else 0.0,
        "floor_s": requests_n / CEILING,
        "429s": too_many,
        "uploads": len(uploads),
        "mean_extract_s": sum(durations) / len(durations),
        "mean_queued_to_start_s": sum(queued) / len(queued) if queued else None,
        "no_extract_running_s": span - busy,
        "mean_extracts_at_once": sum(durations) / span if span else 0.0,
        "first_extract_after_s": first - t0,
        "after_last_extract_s": t1 - last,
    }


def show(result: dict[str, Any]) -> None:
    r = result
    print(
        f"  {r['label']:<7} pool={r['slots']}  runs {r['runs'] - len(r['failed'])}/{r['runs']} ok   "
        f"wall {r['wall_s']:6.1f} s   extracts {r['extract_span_s']:6.1f} s   "
        f"Calltouch {r['requests']} req ({r['expected_requests']} pages) = {r['rate']:.2f} req/s "
        f"= {r['ceiling_pct']:.1f} % of 5/s (floor {r['floor_s']:.1f} s)   429s {r['429s']}   uploads {r['uploads']}"
    )
    q = r["mean_queued_to_start_s"]
    print(
        f"          time: extract {r['mean_extract_s']:.2f} s each, {r['mean_extracts_at_once']:.2f} at once; "
        f"queued->start {q:.2f} s; no extract running {r['no_extract_running_s']:.1f} s of the span; "
        f"first extract after {r['first_extract_after_s']:.1f} s; uploads+sensors after the last extract "
        f"{r['after_last_extract_s']:.1f} s"
        if q is not None
        else ""
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", default="small,large", help="small, large or both (comma-separated)")
    p.add_argument("--small-sites", type=int, default=20)
    p.add_argument("--small-calls", type=int, default=1000)
    p.add_argument("--large-sites", type=int, default=4)
    p.add_argument("--large-calls", type=int, default=20000)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--latency", type=float, default=1.0, help="seconds Calltouch takes to answer")
    p.add_argument("--slots", type=int, default=4, help="calltouch_api pool slots of the shared run")
    p.add_argument("--parallelism", type=int, default=8, help="[core] parallelism (both runs)")
    p.add_argument("--redis", action="store_true", help="the shared limiter in Redis, not a SQLite file")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep AIRFLOW_HOME (logs) afterwards")
    args = p.parse_args(argv)

    all_groups = {
        "small": Group("small", args.small_sites, args.small_calls, 10001, 20001),
        "large": Group("large", args.large_sites, args.large_calls, 10501, 20501),
    }
    groups = [all_groups[n.strip()] for n in args.groups.split(",") if n.strip()]
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        print("PostgreSQL server binaries not found (as root: bash tools/system-deps.sh)", file=sys.stderr)
        return 1
    redis_bin = find_redis_server() if args.redis else None
    if args.redis and redis_bin is None:
        print("redis-server not found (as root: bash tools/system-deps.sh)", file=sys.stderr)
        return 1

    days = day_sets(args.days)
    sites = [s for g in groups for _, s, _ in g.pipelines()]
    counters = [c for g in groups for _, _, c in g.pipelines() + g.account_pipelines()]
    volumes = {
        f"{s}:{d.isoformat()}": g.calls
        for g in groups
        for _, s, _ in g.pipelines()
        for ds in days.values()
        for d in ds
    }
    sandbox_config = {
        "plans_in_progress_seconds": 0,
        "calltouch_tokens": {"sandbox-ct-token": sites},
        "metrika_tokens": {"sandbox-ym-token": counters},
        "volume_overrides": volumes,
    }
    pg_root = Path(tempfile.mkdtemp(prefix="ctm-bench-pg-"))
    home = Path(tempfile.mkdtemp(prefix="ctm-bench-airflow-"))
    data_dir = home / "data"
    data_dir.mkdir()
    config = home / "pipelines.yaml"
    write_pipelines(config, data_dir, groups)
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(pg_root, pw.pw_uid, pw.pw_gid)
    stack = LocalAirflow(
        home=home,
        api_port=free_port(),
        sandbox_port=free_port(),
        sandbox_args=["--status-step-seconds", "0.1", "--config-json", json.dumps(sandbox_config)],
        postgres=PostgresCluster(root=pg_root / "cluster", port=free_port(), bin_dir=bin_dir),
        redis=RedisServer(root=home / "redis", port=free_port(), binary=redis_bin) if redis_bin else None,
        parallelism=args.parallelism,
        pool_slots=1,
        extra_env={"CALLTOUCH_METRIKA_CONFIG": str(config), "CALLTOUCH_METRIKA_DATA": str(data_dir)},
    )
    results: list[dict[str, Any]] = []
    try:
        print(f"starting the stack in {home} ...", flush=True)
        stack.start(timeout=600)
        token = stack.token()
        dags = [dag_id(n) for g in groups for n, _, _ in g.pipelines() + g.account_pipelines()]
        dags += [g.account_dag for g in groups]
        stack.wait_for_dags(dags, timeout=600)
        for d in dags:
            stack.unpause(d, token)
        import requests

        requests.post(
            f"{stack.sandbox_url}/_sandbox/faults",
            json={"scope": "calltouch", "latency": args.latency},
            timeout=30,
        ).raise_for_status()
        print(
            f"LocalExecutor, parallelism {args.parallelism}, PostgreSQL; Calltouch latency {args.latency:g} s; "
            f"shared limiter: {stack.limiter_backend.split('@')[-1]}",
            flush=True,
        )
        for g in groups:
            print(
                f"\n{g.name}: {g.sites} sites x {args.days} days x {g.calls} calls ({g.pages_per_day} page(s) a day)"
            )
            runs = []
            for label, slots in (("today", 1), ("shared", args.slots), ("account", args.slots)):
                token = stack.token()
                r = run_group(stack, token, g, days[label], slots, label)
                show(r)
                runs.append(r)
                results.append(r)
            base = runs[0]
            for new in runs[1:]:
                print(
                    f"  {new['label']} vs today: wall {base['wall_s'] / new['wall_s']:.2f}x faster, "
                    f"extraction {base['extract_span_s'] / new['extract_span_s']:.2f}x faster"
                )
    finally:
        stack.stop()
        shutil.rmtree(pg_root, ignore_errors=True)
        if args.keep:
            print(f"AIRFLOW_HOME kept at {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["failed"] or r["429s"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
