"""Benchmark: peak memory of the real ``MetrikaUploadCallsOperator.execute`` on a 1,000,000-call day.

What it does:

1. generates one day of synthetic calls (the generator of ``bench/transform_calls.py``, with times
   inside the linkage window of *now*) into the extract's Parquet partition on a local storage root,
   i.e. exactly the file the extract operator writes, and the extract XCom pointing at it;
2. starts an upload sink for the Metrika API and points ``metrika_default`` at it through
   ``AIRFLOW_CONN_METRIKA_DEFAULT``:

   * ``--sink local`` (default): a tiny HTTP server in this (parent) process that answers the uploads
     list with ``[]`` and reads the multipart upload to the end, counting bytes, without parsing it.
     Default because the sandbox would parse and keep 1,000,000 rows in its own memory and take most
     of the run's time on a shared machine; the operator does the same requests either way;
   * ``--sink sandbox``: the real sandbox (``sandbox/launch.py``), which parses and validates the CSV;

3. runs, each in a fresh subprocess so that peak RSS (``VmHWM``, see :func:`peak_rss_mib`) belongs to one
   case (the data is generated in a subprocess too, so the parent stays small):

   * **operator**: ``MetrikaUploadCallsOperator(...).execute({})`` -- record batches of the Parquet ->
     vectorised transform per batch -> CSV and rejects on storage -> upload streamed from the file;
   * **transform**: the transform alone, :func:`~calltouch_metrika.transforms.calls_stream.stream_calls_to_metrika_csv`
     over the same Parquet into a local file (no Airflow, no upload);
   * **whole-day** (baseline, the operator before issue 10): the whole Parquet read into memory,
     ``calls_to_metrika`` on it, the CSV built in a ``BytesIO`` (not uploaded);

4. prints seconds, CPU, peak RSS and rows, and the peak ratio against the baseline. Target: the
   operator's peak <= 1 GB for 1,000,000 calls (issue 10).

Run: ``.venv/bin/python bench/upload_operator.py`` (a few minutes on 2 cores); ``--calls 100000`` for a
quick check. Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO), str(REPO / "bench")]

SITE_ID = 10001
COUNTER_ID = 20001  # a counter of the sandbox's default token
PIPELINE = "bench"
GEN_BATCH = 100_000


# ----------------------------------------------------------------------------------- data


def generate_day(root: Path, total: int, seed: int, now: datetime) -> dict[str, Any]:
    """Write ``total`` calls as the extract's Parquet for yesterday; return the extract's XCom."""
    import pyarrow.parquet as pq
    import transform_calls

    from calltouch_metrika import storage
    from calltouch_metrika.transforms.records import calls_to_table

    transform_calls.NOW = now  # the generator spreads calls over the 20 days before its NOW
    day = now.date() - timedelta(days=1)
    path = storage.calls_path(str(root), SITE_ID, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    local = Path(path.path)
    writer = None
    try:
        for start in range(0, total, GEN_BATCH):
            table = calls_to_table(
                transform_calls.generate_records(start + 1, min(GEN_BATCH, total - start), seed)
            )
            if writer is None:
                writer = pq.ParquetWriter(local, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=GEN_BATCH)
    finally:
        if writer is not None:
            writer.close()
    return {
        "path": str(path),
        "paths": [str(path)],
        "site_id": SITE_ID,
        "date_from": day.isoformat(),
        "date_to": (day + timedelta(days=1)).isoformat(),
        "rows": total,
    }


# ----------------------------------------------------------------------------------- local sink


class _Sink(BaseHTTPRequestHandler):
    """Just enough of Metrika's API for the operator: the uploads list and upload_calls."""

    received: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _json(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json({"uploadings": []})

    def do_POST(self) -> None:
        size = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                chunk = int(self.rfile.readline().strip() or b"0", 16)
                if chunk == 0:
                    self.rfile.readline()
                    break
                size += len(self.rfile.read(chunk))
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                got = len(self.rfile.read(min(left, 1 << 20)))
                if not got:
                    break
                size += got
                left -= got
        self.received.append({"path": self.path, "bytes": size})
        self._json({"uploading": {"id": len(self.received), "status": "UPLOADED", "source_quantity": 0}})


def start_local_sink() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ----------------------------------------------------------------------------------- cases


def case_operator(root: Path, extract: dict[str, Any], batch_size: int) -> dict[str, Any]:
    from calltouch_metrika.operators.metrika import MetrikaUploadCallsOperator

    op = MetrikaUploadCallsOperator(
        task_id="upload",
        pipeline=PIPELINE,
        extract=extract,
        counter_id=COUNTER_ID,
        storage_root=str(root),
        batch_size=batch_size,
    )
    out = op.execute({})
    if out["upload_id"] is None:
        raise SystemExit(f"the operator uploaded nothing: {out}")
    return {"extracted": out["extracted"], "uploaded": out["uploaded"], "rejected": out["rejected"]}


def _options(site_id: int) -> Any:
    from calltouch_metrika.transforms.calls import TransformOptions

    return TransformOptions(site_id=site_id)


def case_transform(root: Path, extract: dict[str, Any], batch_size: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from calltouch_metrika.transforms.calls_stream import stream_calls_to_metrika_csv

    source = pq.ParquetFile(Path(extract["path"].removeprefix("file://")))
    with (root / "transform_only.csv").open("wb") as fh:
        result = stream_calls_to_metrika_csv(
            source.iter_batches(batch_size=batch_size), _options(SITE_ID), now=datetime.now(UTC), sink=fh
        )
    c = result.counts
    return {"extracted": c.extracted, "uploaded": c.uploaded, "rejected": c.rejected}


def case_whole_day(root: Path, extract: dict[str, Any], batch_size: int) -> dict[str, Any]:
    import io

    import pyarrow.parquet as pq

    from calltouch_metrika.transforms.calls import calls_to_metrika, write_metrika_csv

    with open(extract["path"].removeprefix("file://"), "rb") as fh:
        table = pq.read_table(io.BytesIO(fh.read()))
    result = calls_to_metrika(table, _options(SITE_ID), now=datetime.now(UTC))
    buffer = io.BytesIO()
    write_metrika_csv(result.upload, buffer)
    data = buffer.getvalue()
    assert data
    c = result.counts
    return {"extracted": c.extracted, "uploaded": c.uploaded, "rejected": c.rejected}


CASES = {"operator": case_operator, "transform": case_transform, "whole-day": case_whole_day}


def peak_rss_mib() -> float:
    """This process's peak resident set (MiB): ``VmHWM`` of /proc/self/status.

    Not ``ru_maxrss``: Linux keeps ``ru_maxrss`` across ``execve``, so a child started by a big parent
    would report the parent's peak. ``VmHWM`` belongs to the process image after exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(case: str, root: Path, extract: dict[str, Any], batch_size: int) -> None:
    """Run one case in this fresh process; print its figures as JSON (imports before the clock)."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    if case == "operator":
        import calltouch_metrika.hooks.metrika
        import calltouch_metrika.operators.metrika
    import calltouch_metrika.transforms.calls_stream  # noqa: F401

    imports_mib = peak_rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    counts = CASES[case](root, extract, batch_size)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mib = peak_rss_mib()
    print(json.dumps({**counts, "seconds": seconds, "cpu": cpu, "peak_mib": peak_mib,
                      "imports_mib": imports_mib}))  # fmt: skip


def _generate_in_child(root: Path, calls: int, seed: int) -> dict[str, Any]:
    """Generate the day in a subprocess, so that this parent (the local sink) stays small."""
    done = subprocess.run(
        [sys.executable, __file__, "--generate", str(root), str(calls), str(seed)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_child(case: str, root: Path, extract: dict[str, Any], batch_size: int, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, str(root), json.dumps(extract), str(batch_size)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    if done.returncode:
        raise SystemExit(f"case {case} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--sink", choices=("local", "sandbox"), default="local")
    parser.add_argument("--batch-size", type=int, default=65_536, help="operator's rows per record batch")
    parser.add_argument("--cases", default="operator,transform,whole-day")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        root, calls, seed = args.generate
        print(json.dumps(generate_day(Path(root), int(calls), int(seed), datetime.now(UTC))))
        return
    if args.child:
        case, root, extract, batch_size = args.child
        child(case, Path(root), json.loads(extract), int(batch_size))
        return

    work = Path(tempfile.mkdtemp(prefix="ctm-bench-upload-"))
    sandbox_proc = server = None
    try:
        root = work / "data"
        started = time.perf_counter()
        extract = _generate_in_child(root, args.calls, args.seed)
        parquet_mib = Path(extract["path"].removeprefix("file://")).stat().st_size / 2**20
        print(f"generated {args.calls:,} calls -> {parquet_mib:.1f} MiB Parquet in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        if args.sink == "sandbox":
            from sandbox import launch

            sandbox_proc, url = launch.start(work / "sandbox.log")
        else:
            server, url = start_local_sink()
        from sandbox.launch import connection_env

        env = {
            **os.environ,
            **connection_env(url),
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
        }
        results = {}
        for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
            results[case] = _run_child(case, root, extract, args.batch_size, env)
            print(f"  {case:10s} {results[case]['seconds']:.1f} s wall, peak {results[case]['peak_mib']:.0f} MiB",
                  flush=True)  # fmt: skip
        if server is not None:
            sent = sum(r["bytes"] for r in _Sink.received)
            print(f"local sink received {len(_Sink.received)} upload(s), {sent / 2**20:.1f} MiB multipart")
    finally:
        if server is not None:
            server.shutdown()
        if sandbox_proc is not None:
            from sandbox import launch

            launch.stop(sandbox_proc)
        shutil.rmtree(work, ignore_errors=True)

    base = results.get("whole-day")
    print()
    print(f"MetrikaUploadCallsOperator memory, {args.calls:,} calls, sink={args.sink}, batch={args.batch_size:,} "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {date.today()})")  # fmt: skip
    print(f"{'case':<11} {'wall s':>7} {'CPU s':>7} {'peak RSS':>10} {'after imports':>14} "
          f"{'uploaded':>10} {'rejected':>9} {'peak / whole-day':>17}")  # fmt: skip
    for case, r in results.items():
        ratio = f"{r['peak_mib'] / base['peak_mib']:.2f}" if base else "-"
        print(f"{case:<11} {r['seconds']:>7.1f} {r['cpu']:>7.1f} {r['peak_mib']:>6.0f} MiB {r['imports_mib']:>10.0f} MiB "
              f"{r['uploaded']:>10,} {r['rejected']:>9,} {ratio:>17}")  # fmt: skip
    op = results.get("operator")
    if op:
        verdict = "OK" if op["peak_mib"] * 2**20 <= 10**9 else "OVER"
        print(f"operator peak {op['peak_mib']:.0f} MiB vs target 1 GB (953.7 MiB): {verdict}")
    print("peak RSS is the whole child process (interpreter, Airflow and libraries included).")


if __name__ == "__main__":
    main()
