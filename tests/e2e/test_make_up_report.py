"""``make up``'s catch-up fills the linkage report: the page's data endpoint shows every caught-up day.

``tools/local_airflow.py up`` (what ``make up`` runs) with a ``demo`` pipeline that starts three days
ago: the scheduler catches those days up on its own (extract >> upload >> wait >> report), and the
page's JSON endpoint then lists exactly the days of the finished runs, each with the counts the
sandbox recorded for its upload. ``down`` stops everything afterwards.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

from tools.local_airflow.stack import free_port

from .conftest import CALLS_DAG, PIPELINE
from .test_make_up import _run, state_dir  # noqa: F401  (state_dir is a fixture)


def _get(url: str, headers: dict[str, str], **params: Any) -> Any:
    r = requests.get(url, headers=headers, params=params, timeout=60)
    r.raise_for_status()
    return r.json()


def test_catch_up_fills_the_linkage_report(state_dir: Path) -> None:  # noqa: F811
    config = state_dir / "pipelines.yaml"
    config.write_text(
        f"pipelines:\n  - name: {PIPELINE}\n    site_id: 10001\n    counter_id: 20001\n"
        f"    start_date: {date.today() - timedelta(days=3)}\n    storage_root: {state_dir / 'data'}\n"
        "    retries: 0\n    status_poll_seconds: 3\n    max_active_runs: 3\n"
    )
    # Not the test session's AIRFLOW_CONN_* (they point at its own sandbox): `up` sets its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["CALLTOUCH_METRIKA_CONFIG"] = str(config)
    api_port, sandbox_port = free_port(), free_port()
    out = _run(
        state_dir,
        "up",
        "--port",
        str(api_port),
        "--sandbox-port",
        str(sandbox_port),
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{api_port}"
        password = re.search(r"password:\s+(\S+)", out)
        assert password, out
        token = requests.post(
            f"{url}/auth/token", json={"username": "admin", "password": password.group(1)}, timeout=30
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        # Wait for the catch-up: runs exist, all finished (none failed), no new one being created.
        deadline = time.monotonic() + 480
        while True:
            runs = _get(f"{url}/api/v2/dags/{CALLS_DAG}/dagRuns", headers, limit=100)["dag_runs"]
            failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
            assert not failed, f"catch-up runs failed: {failed}"
            if len(runs) >= 2 and all(r["state"] == "success" for r in runs):
                time.sleep(10)  # the scheduler may still be creating the last day's run
                again = _get(f"{url}/api/v2/dags/{CALLS_DAG}/dagRuns", headers, limit=100)["dag_runs"]
                if len(again) == len(runs) and all(r["state"] == "success" for r in again):
                    break
            assert time.monotonic() < deadline, (
                f"catch-up not finished: {[(r['dag_run_id'], r['state']) for r in runs]}"
            )
            time.sleep(5)

        report = _get(f"{url}/calltouch-metrika/api/linkage", headers, pipeline=PIPELINE, days=30)
        uploads = requests.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/state", timeout=30).json()[
            "uploads"
        ]
        by_day = {re.search(r"\d{4}-\d{2}-\d{2}", u["comment"]).group(0): u for u in uploads}
        rows = {r["day"]: r for r in report["rows"]}
        run_days = {}
        for run in runs:
            xcom = _get(
                f"{url}/api/v2/dags/{CALLS_DAG}/dagRuns/{run['dag_run_id']}/taskInstances/upload/xcomEntries/return_value",
                headers,
                deserialize=True,
                stringify=False,
            )["value"]
            upload = json.loads(xcom) if isinstance(xcom, str) else xcom
            extract = _get(
                f"{url}/api/v2/dags/{CALLS_DAG}/dagRuns/{run['dag_run_id']}/taskInstances/extract/xcomEntries/return_value",
                headers,
                deserialize=True,
                stringify=False,
            )["value"]
            extract = json.loads(extract) if isinstance(extract, str) else extract
            # the run's own day (its extract also re-reads lookback days) and that day's upload counts
            (day,) = extract["main_days"]
            (counts,) = [d for d in upload["days"] if d["day"] == day]
            run_days[day] = (run["dag_run_id"], counts)
        assert sorted(rows) == sorted(run_days), (sorted(rows), sorted(run_days))
        # Catch-up runs overlap: a run's lookback may send an earlier day's calls before that day's own
        # run does (which then finds them already sent). The report follows the calls: a day's row
        # holds what the sandbox received for that day, whichever run sent it.
        for day, (_run_id, counts) in run_days.items():
            row, stored = rows[day], by_day[day]
            assert (row["extracted"], row["rejected"]) == (counts["extracted"], counts["rejected"]), day
            assert row["uploaded"] == stored["source_quantity"] == counts["extracted"] - counts["rejected"], (
                day
            )
            assert row["upload_ids"] == [stored["id"]] and row["status"] == stored["status"]
            assert (row["source_quantity"], row["line_quantity"], row["linked_quantity"]) == (
                stored["source_quantity"],
                stored["line_quantity"],
                stored["linked_quantity"],
            ), day
            assert row["runs"] and all(r["dag_id"] == CALLS_DAG for r in row["runs"]), row["runs"]
        assert len(uploads) == len(run_days), [u["comment"] for u in uploads]  # one upload per day
        assert report["totals"]["days_reported"] == len(run_days) >= 2
    finally:
        _run(state_dir, "down", env=env, timeout=180)
