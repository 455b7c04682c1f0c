"""``make demo``: run the daily calls pipeline for yesterday against the sandbox, then say what happened.

What it does, in order (and why each step):

1. starts the API emulator (``python -m sandbox``) on a free loopback port, so no real account is needed;
2. uses a private Airflow home, ``<repo>/.airflow-demo`` (SQLite), with this repo's ``dags/`` and
   ``plugins/``, no examples, and the ``calltouch_default`` / ``metrika_default`` connections pointing at
   the sandbox through ``AIRFLOW_CONN_*`` variables (nothing is written to a real Airflow);
3. migrates that Airflow database;
4. runs ``airflow dags test calltouch_calls_to_metrika__demo`` for yesterday (local time of the pipeline);
5. prints a summary: calls extracted, rejected (by reason) and uploaded, the upload id, Metrika's final
   status and quantities (as the sandbox recorded them), and where the files are.

Whatever happens, the processes it started are stopped. Exit status 0 only if the run succeeded and
the sandbox holds exactly one upload per day with calls (the day and its ``lookback_days``), each call
once, reconciled with the extracted and rejected counts. Data goes to ``.airflow-demo/data`` (emptied
each run: the sandbox starts empty each time, so must the call ledger).

Other parts of the product add their own demo steps to :data:`STEPS` (a name and a function taking
the :class:`Demo`); each step returns lines to print in the summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = REPO / ".airflow-demo"
PIPELINE = "demo"
DEADLINE_SECONDS = 110

sys.path.insert(0, str(REPO))  # run as `python tools/demo.py`: make the repo's `sandbox` importable
from sandbox import launch  # noqa: E402


@dataclass
class Demo:
    """What the steps share: the sandbox URL, the environment for Airflow commands, the pipeline, logs."""

    url: str
    env: dict[str, str]
    pipeline: object
    day: date
    logs: Path
    summary: list[str] = field(default_factory=list)

    def sandbox_state(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_sandbox/state", timeout=10) as r:
            return json.load(r)

    def airflow(self, *args: str, log_name: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with the demo environment; output goes to ``logs/<log_name>``."""
        log_file = self.logs / log_name
        with log_file.open("w") as fh:
            proc = subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                cwd=REPO,
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        return proc


def _environment(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(AIRFLOW_HOME),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
            **launch.connection_env(url),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "plugins"), env.get("PYTHONPATH")) if p),
        }
    )
    return env


def logical_date_for(day: date, tz: str, schedule: str) -> str:
    """The logical date that names local ``day``: the plain date (``2026-11-29``).

    Each run of the calls and requests DAGs is one local day (``LocalDayTimetable``), and
    ``airflow dags test DAG 2026-11-29`` processes 2026-11-29 (``tz`` and ``schedule`` no longer matter).
    """
    return day.isoformat()


# -- steps --------------------------------------------------------------------------------------------
def step_calls_to_metrika(demo: Demo) -> list[str]:
    """Run the calls DAG for ``demo.day`` and report extracted / rejected / uploaded and Metrika's answer."""
    import pyarrow.parquet as pq

    from calltouch_metrika import storage

    p = demo.pipeline
    dag_id = p.dag_id  # type: ignore[attr-defined]
    proc = demo.airflow(
        "dags",
        "test",
        dag_id,
        logical_date_for(demo.day, p.timezone, p.schedule),
        log_name="dags-test.log",  # type: ignore[attr-defined]
    )
    log_text = (demo.logs / "dags-test.log").read_text(errors="replace")
    for line in log_text.splitlines():  # the task summaries, as the task logs show them
        keys = (
            "summary",
            "extracted ",
            "uploaded as",
            "already uploaded",
            "finished: status",
            "CSV:",
            "rejects:",
            "Linkage report",
        )
        if any(key in line for key in keys) or line.startswith("  upload id:"):
            print("  |", line.split(" [airflow.task")[0].split(" [calltouch")[0].rstrip()[:220])
    if proc.returncode != 0:
        tail = "\n".join(log_text.splitlines()[-40:])
        raise RuntimeError(
            f"`airflow dags test {dag_id}` failed (exit {proc.returncode}); last lines:\n{tail}"
        )

    root = p.storage_root  # type: ignore[attr-defined]
    # The run sends day D and re-reads its `lookback_days` earlier days (late calls): one upload per day
    # with calls not sent yet (comment "... <day> part <n>"), each call once.
    days = [demo.day - timedelta(days=k) for k in range(p.lookback_days, -1, -1)]  # type: ignore[attr-defined]
    uploads = [u for u in demo.sandbox_state()["uploads"] if u["counter_id"] == p.counter_id]  # type: ignore[attr-defined]
    lines = [f"Calls of site {p.site_id} -> Metrika counter {p.counter_id} (DAG {dag_id}, run of {demo.day})"]  # type: ignore[attr-defined]
    ok = True
    for day in days:
        parquet = storage.calls_path(root, p.site_id, day)  # type: ignore[attr-defined]
        if not parquet.exists():
            continue
        rejects = storage.rejects_path(root, p.counter_id, day, p.name)  # type: ignore[attr-defined]
        extracted = pq.read_table(parquet.path).num_rows
        reasons = pq.read_table(rejects.path).column("reason").to_pylist() if rejects.exists() else []
        by_reason: dict[str, int] = {}
        for r in reasons:
            by_reason[r] = by_reason.get(r, 0) + 1
        mine = [u for u in uploads if f" {day.isoformat()} part " in (u["comment"] or "")]
        uploaded = sum(len(u["rows"]) for u in mine)
        day_ok = extracted == uploaded + len(reasons) and all(u["status"] == "PROCESSED" for u in mine)
        ok = ok and day_ok and len(mine) == 1
        what = "the run's day" if day == demo.day else "lookback"
        lines += [
            f"  {day} ({what}): extracted {extracted} = uploaded {uploaded} + rejected {len(reasons)}"
            f" {'(reconciled)' if day_ok else '(DOES NOT RECONCILE)'}",
            "    rejected by reason: "
            + (", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) or "none"),
        ]
        for u in mine:
            lines.append(
                f"    upload id {u['id']} {u['comment']!r}: Metrika status {u['status']}, {u['line_quantity']} of "
                f"{u['source_quantity']} rows accepted, {u.get('linked_quantity', '?')} linked to visits"
            )
    ids = [row["CallTrackerURL"] for u in uploads for row in u["rows"]]
    ok = ok and len(ids) == len(set(ids))
    lines += [
        f"  uploads: {len(uploads)}, {len(ids)} calls, each once"
        + ("" if len(ids) == len(set(ids)) else " (NOT!)"),
        f"  files under {storage.root_path(root).path}",
    ]
    if not ok:
        raise RuntimeError("\n".join(lines))
    return lines


def step_plans_import(demo: Demo) -> list[str]:
    """Run the plans DAG (forced, since the sandbox forgets imports between demos) and list the imports."""
    proc = demo.airflow(
        "dags",
        "test",
        "calltouch_plans_import",
        "--conf",
        json.dumps({"force": True}),
        log_name="dags-test-plans.log",
    )
    if proc.returncode != 0:
        tail = "\n".join((demo.logs / "dags-test-plans.log").read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(
            f"`airflow dags test calltouch_plans_import` failed (exit {proc.returncode}):\n{tail}"
        )
    imports = demo.sandbox_state()["plans_imports"]
    if not imports:
        raise RuntimeError("the plans DAG succeeded but the sandbox received no plans import")
    lines = ["Plan metrics -> Calltouch (DAG calltouch_plans_import)"]
    lines += [
        f"  import {i['id']}: site {i['site_id']}, {len(i['items'])} rows, final status {i['status']!r}"
        for i in imports
    ]
    if any(i["status"] != "success" for i in imports):
        raise RuntimeError("\n".join(lines))
    return lines


def step_requests_export(demo: Demo) -> list[str]:
    """Run the requests export DAG for ``demo.day`` and list the requests dataset it wrote."""
    from collections import Counter

    import pyarrow.parquet as pq

    from calltouch_metrika import storage

    p = demo.pipeline
    export = p.requests_export  # type: ignore[attr-defined]
    if export is None or not export.enabled:
        return [f"Requests export: off for pipeline {p.name!r} (set requests_export.enabled)"]  # type: ignore[attr-defined]
    dag_id = f"calltouch_requests_export__{p.name}"  # type: ignore[attr-defined]
    when = logical_date_for(demo.day, p.timezone, export.schedule or p.schedule)  # type: ignore[attr-defined]
    proc = demo.airflow("dags", "test", dag_id, when, log_name="dags-test-requests.log")
    if proc.returncode != 0:
        tail = "\n".join(
            (demo.logs / "dags-test-requests.log").read_text(errors="replace").splitlines()[-40:]
        )
        raise RuntimeError(
            f"`airflow dags test {dag_id}` failed (exit {proc.returncode}); last lines:\n{tail}"
        )
    path = storage.requests_path(p.storage_root, p.site_id, demo.day)  # type: ignore[attr-defined]
    table = pq.read_table(path.path)
    site_dir = path.parent.parent
    partitions = sorted(site_dir.glob("date=*/requests.parquet"), key=lambda f: f.parent.name)
    subjects = Counter(s for s in table.column("subject").to_pylist() if s)
    tags = Counter(t for names in table.column("tag_names").to_pylist() for t in names or ())
    lines = [
        f"Requests (leads) of site {p.site_id} -> dataset (DAG {dag_id}, Asset calltouch_requests__{p.name})",  # type: ignore[attr-defined]
        f"  {site_dir.path}/  ({len(partitions)} partition(s))",
        *(
            f"    {f.parent.name}/requests.parquet  {pq.read_metadata(f.path).num_rows} rows"
            for f in partitions
        ),
        f"  {demo.day}: {table.num_rows} requests x {table.num_columns} columns",
        "  subjects: " + (", ".join(f"{k} {v}" for k, v in subjects.most_common(4)) or "none"),
        "  tags: "
        + (", ".join(f"{k} {v}" for k, v in tags.most_common(4)) or "none (with_request_tags off?)"),
    ]
    if table.num_rows == 0:
        raise RuntimeError("\n".join([*lines, "  expected requests for a past day in the sandbox, got none"]))
    return lines


#: (name, step) pairs run in order after Airflow is ready; append your part's demo here.
STEPS: list[tuple[str, Callable[[Demo], list[str]]]] = [
    ("calls to Metrika", step_calls_to_metrika),
    ("plans into Calltouch", step_plans_import),
    ("requests (leads) export", step_requests_export),
]


def main() -> int:
    started = time.monotonic()
    sys.path.insert(0, str(REPO / "plugins"))
    # A private data folder, emptied each run: the demo's sandbox starts empty every time, so the
    # counter's call ledger (which calls were sent) must start empty too; `make up` keeps using data/.
    data = AIRFLOW_HOME / "data"
    shutil.rmtree(data, ignore_errors=True)
    os.environ["CALLTOUCH_METRIKA_DATA"] = str(data)
    from calltouch_metrika.config import load_config

    pipeline = load_config().get_pipeline(PIPELINE)
    day = datetime.now(ZoneInfo(pipeline.timezone)).date() - timedelta(days=1)
    AIRFLOW_HOME.mkdir(exist_ok=True)
    logs = AIRFLOW_HOME / "demo-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()

    print(f"calltouch-metrika demo: pipeline {PIPELINE!r}, day {day} ({pipeline.timezone})")
    sandbox: subprocess.Popen[bytes] | None = None
    try:
        print("- starting the sandbox (API emulator) ...")
        sandbox, url = launch.start(logs / "sandbox.log")
        print(f"  sandbox at {url}")
        demo = Demo(url=url, env=_environment(url), pipeline=pipeline, day=day, logs=logs)
        print(f"- preparing Airflow in {AIRFLOW_HOME} (airflow db migrate) ...")
        migrated = demo.airflow("db", "migrate", log_name="db-migrate.log", timeout=600)
        if migrated.returncode != 0:
            raise RuntimeError(f"`airflow db migrate` failed; see {logs / 'db-migrate.log'}")
        for name, step in STEPS:
            print(f"- {name} ...")
            demo.summary += ["", *step(demo)]
    except Exception as exc:
        print(f"\nDEMO FAILED: {exc}\nlogs: {logs}", file=sys.stderr)
        return 1
    finally:
        if sandbox is not None:
            launch.stop(sandbox)
    print("\n=== summary ===" + "\n".join(demo.summary))
    port = os.environ.get("AIRFLOW_PORT", "8080")
    print(
        f"\nLinkage report (sent, rejected, linked per day): `make up`, then http://127.0.0.1:{port}/calltouch-metrika/linkage"
        "\n  (Airflow UI: Browse -> Linkage report); in a terminal: "
        f"CALLTOUCH_METRIKA_DATA={data} .venv/bin/python -m calltouch_metrika.report --pipeline {PIPELINE} --days 30"
    )
    elapsed = time.monotonic() - started
    print(f"\ndone in {elapsed:.0f} s; logs in {logs}")
    if elapsed > DEADLINE_SECONDS:
        print(f"note: slower than the {DEADLINE_SECONDS} s target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
