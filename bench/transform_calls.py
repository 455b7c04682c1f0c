"""Benchmark: Calltouch calls (Parquet) -> Metrika calls CSV, our vectorised path vs a row-by-row baseline.

What it does, for each size (default 100,000 and 1,000,000 calls):

1. generates synthetic calls with its own seeded generator (70 % with a ``yaClientId``; caller
   numbers in the usual shapes ``7XXXXXXXXXX``, ``8XXXXXXXXXX``, ``+7 (XXX) XXX-XX-XX``, a few foreign
   and broken ones; 40 % with call tags; some orders), turns them into the extract's table with
   :func:`calltouch_metrika.transforms.records.calls_to_table` and writes Parquet (row groups of
   100,000), i.e. exactly what the extract operator stores;
2. runs, each in a fresh subprocess so that peak memory (``ru_maxrss``) belongs to one case:

   * **ours**: Parquet row groups -> :func:`~calltouch_metrika.transforms.calls_stream.stream_calls_to_metrika_csv`
     (vectorised ``calls_to_metrika`` per batch + ``pyarrow.csv``), bounded memory;
   * **baseline**: a straightforward row-by-row implementation of the same main rules: Parquet batch
     -> ``to_pylist()``, per row: identifier, DateTime, window, durations, flags, ``phonenumbers``
     on every caller number, ``json.loads`` of the tags, ``csv.writer`` (also by batch, so its
     memory is bounded too and the comparison is about CPU);

3. prints a table: seconds, rows/s, peak RSS, CSV size, uploaded rows, and the speed-up.

The operator itself (reading, rejects, upload included) is measured by ``bench/upload_operator.py``.

Run: ``.venv/bin/python bench/transform_calls.py`` (about 1-2 minutes on 2 cores);
``--sizes 20000`` for a quick check. Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NOW = datetime(2024, 11, 26, 0, 0, tzinfo=UTC)
SITE_ID = 10001
BATCH = 100_000
TAG_NAMES = ["Целевой", "Спам", "Продажа", "Повторный", 'Качество: "хорошо"', "Перезвонить, срочно"]


# ----------------------------------------------------------------------------------- generator


def generate_records(start: int, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` synthetic call records (dicts shaped like the calls-diary API), ids from ``start``."""
    import numpy as np

    rng = np.random.default_rng([seed, start])
    now_ts = int(NOW.timestamp())
    ts = rng.integers(now_ts - 20 * 86400, now_ts - 60, size=count)
    msk = ts + 3 * 3600  # Europe/Moscow is UTC+3 all year since 2014
    dates = [datetime.fromtimestamp(int(v), UTC).strftime("%d/%m/%Y %H:%M:%S") for v in msk]
    has_ya = rng.random(count) < 0.7
    ya = rng.integers(10**17, 10**19, size=count, dtype=np.uint64)
    mobile = rng.integers(900_000_0000, 999_999_9999, size=count)
    shape = rng.random(count)
    duration = rng.integers(0, 900, size=count)
    waiting = rng.integers(0, 60, size=count)
    successful = rng.random(count) < 0.8
    unique = rng.random(count) < 0.5
    has_session = rng.random(count) < 0.85
    tagged = rng.random(count) < 0.4
    tag_picks = rng.integers(0, len(TAG_NAMES), size=(count, 2))
    ordered = rng.random(count) < 0.1
    amounts = rng.integers(100, 100_000, size=count)
    records = []
    for i in range(count):
        number = int(mobile[i])
        s = shape[i]
        if s < 0.60:
            phone: Any = f"7{number}"
        elif s < 0.75:
            phone = f"8{number}"
        elif s < 0.90:
            text = str(number)
            phone = f"+7 ({text[:3]}) {text[3:6]}-{text[6:8]}-{text[8:]}"
        elif s < 0.93:
            phone = f"375{number % 1_000_000_000:09d}"
        elif s < 0.95:
            phone = ["anonymous", "", "unknown", "0"][i % 4]
        elif s < 0.97:
            phone = None
        else:
            phone = f"+7{number}"
        record: dict[str, Any] = {
            "callId": start + i,
            "timestamp": int(ts[i]),
            "date": dates[i],
            "yaClientId": str(int(ya[i])) if has_ya[i] else None,
            "duration": int(duration[i]),
            "waitingConnect": int(waiting[i]),
            "successful": bool(successful[i]),
            "uniqueCall": bool(unique[i]),
            "targetCall": bool(successful[i]),
            "callerNumber": phone,
            "phoneNumber": "74951234567",
            "sessionId": int(start + i) if has_session[i] else None,
            "ctClientId": int(start + i) * 7 if has_session[i] else None,
            "siteId": SITE_ID,
            "source": "yandex",
            "medium": "cpc",
            "utmSource": "<не указано>",
            "city": "moscow",
            "url": f"https://example.ru/landing?page={i % 50}",
            "callUrl": f"https://example.ru/contacts/{i % 20}" if i % 3 else None,
            "callTags": [
                {
                    "category": "",
                    "type": "MANUAL",
                    "names": [TAG_NAMES[tag_picks[i, 0]], TAG_NAMES[tag_picks[i, 1]]],
                }
            ]
            if tagged[i]
            else [],
            "orders": [{"orderId": i, "completedAmount": f"{int(amounts[i])}.0000"}] if ordered[i] else [],
        }
        records.append(record)
    return records


def write_parquet(path: Path, total: int, seed: int) -> float:
    """Generate ``total`` calls into ``path`` by batches; return the seconds it took."""
    import pyarrow.parquet as pq

    from calltouch_metrika.transforms.records import CALLS_SCHEMA, calls_to_table

    started = time.perf_counter()
    writer = None
    try:
        for start in range(0, total, BATCH):
            table = calls_to_table(generate_records(start + 1, min(BATCH, total - start), seed))
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=BATCH)
    finally:
        if writer is not None:
            writer.close()
    assert pq.read_schema(path).equals(CALLS_SCHEMA)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------- the two paths


def run_ours(parquet: Path, out: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from calltouch_metrika.transforms.calls import TransformOptions
    from calltouch_metrika.transforms.calls_stream import stream_calls_to_metrika_csv

    options = TransformOptions(site_id=SITE_ID, price_mode="orders")
    source = pq.ParquetFile(parquet)
    with out.open("wb") as sink:
        result = stream_calls_to_metrika_csv(
            source.iter_batches(batch_size=BATCH), options, now=NOW, sink=sink
        )
    return {"extracted": result.counts.extracted, "uploaded": result.counts.uploaded}


def run_baseline(parquet: Path, out: Path) -> dict[str, Any]:
    """Row by row, the way one would write it first: the same main rules, no vectorisation, no caching."""
    from decimal import Decimal

    import phonenumbers
    import pyarrow.parquet as pq

    now_ts = int(NOW.timestamp())
    oldest = now_ts - 21 * 86400
    seen: set[int] = set()
    extracted = uploaded = 0
    columns = ["callId", "timestamp", "yaClientId", "duration", "waitingConnect", "successful", "uniqueCall",
               "callerNumber", "sessionId", "ctClientId", "url", "callUrl", "callTags", "orders"]  # fmt: skip
    header = ["ClientId", "DateTime", "StaticCall", "Price", "Currency", "PhoneNumber", "TalkDuration",
              "HoldDuration", "CallMissed", "Tag", "FirstTimeCaller", "URL", "CallTrackerURL"]  # fmt: skip
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for batch in pq.ParquetFile(parquet).iter_batches(batch_size=BATCH, columns=columns):
            for row in batch.to_pylist():
                extracted += 1
                call_id = row["callId"]
                if call_id is None or call_id in seen:
                    continue
                seen.add(call_id)
                ident = (row["yaClientId"] or "").strip()
                ts = row["timestamp"]
                if not ident.isdigit() or ts is None or not oldest <= ts <= now_ts:
                    continue
                if (row["duration"] or 0) < 0 or (row["waitingConnect"] or 0) < 0:
                    continue
                phone = ""
                if row["callerNumber"]:
                    try:
                        number = phonenumbers.parse(row["callerNumber"], "RU")
                        if phonenumbers.is_possible_number(number):
                            phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    except phonenumbers.NumberParseException:
                        pass
                names: list[str] = []
                for tag in json.loads(row["callTags"] or "[]"):
                    for name in tag.get("names") or []:
                        if name not in names:
                            names.append(name)
                price = sum((Decimal(str(o.get("completedAmount"))) for o in json.loads(row["orders"] or "[]")),
                            Decimal(0))  # fmt: skip
                static = 1 if not row["sessionId"] and row["ctClientId"] is None else 0
                writer.writerow(
                    [ident, ts, static, f"{price:.2f}" if price else "", "RUB" if price else "", phone,
                     row["duration"], row["waitingConnect"], 0 if row["successful"] else 1, ", ".join(names),
                     1 if row["uniqueCall"] else 0, row["callUrl"] or row["url"] or "",
                     f"https://my.calltouch.ru/accounts/{SITE_ID}/calls-log?callId={call_id}"]
                )  # fmt: skip
                uploaded += 1
    return {"extracted": extracted, "uploaded": uploaded}


def child(case: str, parquet: Path, out: Path) -> None:
    """Run one case in this (fresh) process and print its figures as JSON.

    Libraries are imported before the clock starts (import time is not what we measure). Both wall
    and CPU time are reported: the machine may be shared, and CPU time is the steadier figure.
    """
    import pandas  # noqa: F401
    import phonenumbers  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import calltouch_metrika.transforms.calls  # noqa: F401

    started, cpu_started = time.perf_counter(), time.process_time()
    counts = (run_ours if case == "ours" else run_baseline)(parquet, out)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                **counts,
                "seconds": seconds,
                "cpu": cpu,
                "peak_mib": peak_kib / 1024,
                "bytes": out.stat().st_size,
            }
        )
    )


# ----------------------------------------------------------------------------------- driver


def _run_case(case: str, parquet: Path, out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, str(parquet), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated call counts")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the generated files (path is printed)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "PARQUET", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, parquet, out = args.child
        child(case, Path(parquet), Path(out))
        return

    work = Path(tempfile.mkdtemp(prefix="ctm-bench-"))
    rows = []
    try:
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            parquet = work / f"calls_{size}.parquet"
            gen_seconds = write_parquet(parquet, size, args.seed)
            print(f"generated {size:,} calls -> {parquet.stat().st_size / 2**20:.1f} MiB Parquet "
                  f"in {gen_seconds:.1f} s", flush=True)  # fmt: skip
            results = {}
            for case in ("ours", "baseline"):
                results[case] = _run_case(case, parquet, work / f"{case}_{size}.csv")
                print(
                    f"  {case:8s} {results[case]['seconds']:.2f} s wall, {results[case]['cpu']:.2f} s CPU",
                    flush=True,
                )
            if results["ours"]["extracted"] != size or results["baseline"]["extracted"] != size:
                raise SystemExit(f"a case did not read all {size} calls: {results}")
            for case in ("ours", "baseline"):
                r = results[case]
                rows.append(
                    (
                        size,
                        case,
                        r,
                        results["baseline"]["cpu"] / r["cpu"],
                        results["baseline"]["seconds"] / r["seconds"],
                    )
                )
    finally:
        if args.keep:
            print(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"calls -> Metrika CSV (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, now={NOW:%Y-%m-%d})"
    )
    print(
        f"{'calls':>10} {'approach':<9} {'wall s':>7} {'CPU s':>7} {'rows/s CPU':>11} {'peak RSS':>10} "
        f"{'CSV MiB':>8} {'uploaded':>9} {'x CPU':>6} {'x wall':>6}"
    )
    for size, case, r, ratio_cpu, ratio_wall in rows:
        print(
            f"{size:>10,} {case:<9} {r['seconds']:>7.2f} {r['cpu']:>7.2f} {size / r['cpu']:>11,.0f} "
            f"{r['peak_mib']:>6.0f} MiB {r['bytes'] / 2**20:>8.1f} {r['uploaded']:>9,} {ratio_cpu:>5.1f}x {ratio_wall:>5.1f}x"
        )
    print(
        "rows/s counts every call read (uploaded or rejected) per CPU second (all threads); x = baseline / ours;"
    )
    print("peak RSS is the whole child process (interpreter and libraries included).")
    print(
        "The baseline applies fewer rules (no date cross-check, no fast phone path), so the ratio is conservative."
    )


if __name__ == "__main__":
    main()
