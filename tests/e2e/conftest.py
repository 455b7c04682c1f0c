"""End-to-end harness: real Airflow processes on a private PostgreSQL, plus the sandbox, on loopback.

One session-scoped stack (``e2e``) is started the same way ``make up`` starts it
(the ``tools.local_airflow`` package): ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer``
with the LocalExecutor, a private PostgreSQL cluster (Debian's ``postgresql`` package) as the
metadata DB, and ``python -m sandbox`` behind the ``calltouch_default`` / ``metrika_default``
connections. Everything is stopped at the end of the session, even when a test or the start fails.

The pipelines come from a test-only ``pipelines.yaml`` (``CALLTOUCH_METRIKA_CONFIG``): one pipeline
``demo`` (site 10001 -> counter 20001) whose ``start_date`` is tomorrow, so no scheduled or catch-up
run ever starts on its own: only the runs the tests create exist, and the sandbox's uploads can be
counted exactly. (Backfills and manual runs are not bounded by ``start_date`` in Airflow 3.)

Skips, each with its reason: no PostgreSQL server binaries (``bash tools/system-deps.sh`` installs them
as root), running as root without a ``postgres`` system user (``initdb`` refuses root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tools.local_airflow.postgres import PostgresCluster, find_postgres_bin
from tools.local_airflow.processes import tail
from tools.local_airflow.stack import POOL_NAME, LocalAirflow, free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

# The sandbox's first account (docs/design.md), as in tests/conftest.py.
SITE_ID = 10001
COUNTER_ID = 20001
SECRETS = ("sandbox-ct-token", "sandbox-ym-token")

PIPELINE = "demo"
CALLS_DAG = f"calltouch_calls_to_metrika__{PIPELINE}"
PLANS_DAG = "calltouch_plans_import"
REQUESTS_DAG = f"calltouch_requests_export__{PIPELINE}"

#: Small days so extraction is quick; Metrika statuses step every 2 s (PROCESSED ~8 s after upload);
#: plans imports succeed at once. Tests that must see the status sensor defer hold the statuses first
#: (``E2E.hold_metrika_statuses``). Why no quick deferrals: in Airflow 3.3.2 a trigger that fires within
#: a second or two of its deferral can lose a race with the executor's stale "success" event for the
#: deferring attempt, which fails the resumed task ("state mismatch"; apache/airflow#71580, #72716;
#: fix PR #71579 not released).
SANDBOX_ARGS = [
    "--calls-per-day",
    "12",
    "--status-step-seconds",
    "2",
    "--config-json",
    '{"plans_in_progress_seconds": 0}',
]
STATUS_POLL_SECONDS = 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is an ``e2e`` (and ``airflow``) test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.airflow)


def backfill_days(n: int, *, end_days_ago: int) -> list[date]:
    """``n`` consecutive past days ending ``end_days_ago`` days before today (UTC), oldest first.

    Recent (within Metrika's 21-day linkage window), and complete in every time zone we use.
    """
    last = date.today() - timedelta(days=end_days_ago)
    return [last - timedelta(days=i) for i in range(n - 1, -1, -1)]


def write_pipelines(path: Path, data_dir: Path) -> None:
    """The test's pipelines file: the ``demo`` pipeline with plans and requests export enabled."""
    tomorrow = date.today() + timedelta(days=1)
    path.write_text(
        f"""\
pipelines:
  - name: {PIPELINE}
    site_id: {SITE_ID}
    counter_id: {COUNTER_ID}
    timezone: Europe/Moscow
    schedule: "0 5 * * *"
    start_date: {tomorrow.isoformat()}
    filters: {{with_call_tags: true}}
    new_goal_name: Звонок из Calltouch
    storage_root: {data_dir}
    pool: {POOL_NAME}
    retries: 0
    status_poll_seconds: {STATUS_POLL_SECONDS}
    status_timeout_hours: 1
    plans_file: plans_{SITE_ID}.csv
    requests_export: {{enabled: true}}
""",
        encoding="utf-8",
    )


class SandboxState:
    """Reads the sandbox's ``/_sandbox/state`` (what it received) and updates its config."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def configure(self, **config: Any) -> None:
        r = requests.post(f"{self.url}/_sandbox/config", json=config, timeout=30)
        r.raise_for_status()

    def state(self) -> dict[str, Any]:
        r = requests.get(f"{self.url}/_sandbox/state", timeout=30)
        r.raise_for_status()
        return r.json()


class E2E:
    """The running stack plus the helpers the tests share (REST API, CLI, metadata DB, sandbox)."""

    def __init__(self, local: LocalAirflow, sandbox: SandboxState, data_dir: Path) -> None:
        self.stack = local
        self.sandbox = sandbox
        self.data_dir = data_dir
        self._token: str | None = None
        self._token_at = 0.0

    @property
    def token(self) -> str:
        if self._token is None or time.monotonic() - self._token_at > 600:
            self._token = self.stack.token()
            self._token_at = time.monotonic()
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.stack.api(method, path, token=self.token, **kwargs)

    def airflow(self, *args: str, **kwargs: Any) -> Any:
        return self.stack.airflow(*args, **kwargs)

    def runs(self, dag_id: str) -> dict[str, dict[str, Any]]:
        """``run_id`` -> DAG run (REST API)."""
        body = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        return {r["dag_run_id"]: r for r in body["dag_runs"]}

    def wait_runs(
        self, dag_id: str, run_ids: set[str] | None = None, *, count: int | None = None, timeout: float = 420
    ) -> dict[str, dict[str, Any]]:
        """Wait until the given runs (or ``count`` runs) exist and are all finished; return them.

        Fails early, naming the run and its failed tasks, as soon as one run fails.
        """
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs(dag_id)
            chosen = {k: v for k, v in runs.items() if run_ids is None or k in run_ids}
            failed = [k for k, v in chosen.items() if v["state"] == "failed"]
            if failed:
                pytest.fail(f"{dag_id}: run(s) failed: {self.describe_failures(dag_id, failed)}")
            enough = len(chosen) >= (count if count is not None else len(run_ids or ()))
            if chosen and enough and all(v["state"] == "success" for v in chosen.values()):
                return chosen
            if time.monotonic() > deadline:
                states = {k: v["state"] for k, v in chosen.items()}
                pytest.fail(
                    f"{dag_id}: runs not finished after {timeout:.0f}s: {states}\n{self.diagnostics()}"
                )
            time.sleep(3)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        body = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """A task's ``return_value`` XCom (deserialised)."""
        body = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"deserialize": True, "stringify": False},
        )
        value = body["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log_files(self, dag_id: str, run_id: str | None = None) -> list[Path]:
        base = self.stack.logs_dir / f"dag_id={dag_id}"
        pattern = f"run_id={run_id}/**/*.log" if run_id else "**/*.log"
        return sorted(base.glob(pattern))

    def describe_failures(self, dag_id: str, run_ids: list[str]) -> str:
        lines = []
        for run_id in run_ids:
            for task_id, ti in self.task_instances(dag_id, run_id).items():
                if ti["state"] not in ("success", "skipped"):
                    lines.append(f"{run_id} {task_id}: {ti['state']}")
                    for f in self.task_log_files(dag_id, run_id):
                        if f"task_id={task_id}" in str(f):
                            lines.append(f"--- {f.name}:\n{tail(f, 25)}")
        return "\n".join(lines) or "(no failed task instance found)"

    def diagnostics(self) -> str:
        return "\n".join(
            f"--- {name}.log:\n{tail(self.stack.home / f'{name}.log', 15)}"
            for name in ("scheduler", "triggerer")
        )

    def audit_events(self, dag_id: str) -> list[tuple[str, str, str]]:
        """``(event, task_id, run_id)`` rows of Airflow's audit log table for ``dag_id``, oldest first."""
        conn = self.stack.postgres.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT event, task_id, run_id FROM log WHERE dag_id = %s ORDER BY id", (dag_id,))
                return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def hold_metrika_statuses(self) -> None:
        """Keep every Metrika upload short of PROCESSED (an hour per status step) until released.

        Statuses are computed from the step length at each request, so this also holds existing uploads.
        """
        self.sandbox.configure(status_step_seconds=3600)

    def release_metrika_statuses(self) -> None:
        """Every upload reaches its final status at once (the statuses step every 0.1 s)."""
        self.sandbox.configure(status_step_seconds=0.1)

    def uploads(self) -> list[dict[str, Any]]:
        return [u for u in self.sandbox.state()["uploads"] if u["counter_id"] == COUNTER_ID]


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    """Start the whole stack once; stop every process and remove the cluster at the end."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(as root, `bash tools/system-deps.sh` installs Debian's postgresql package)"
        )
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' user to run initdb as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root, and `runuser` (util-linux) is missing to run initdb as postgres")

    # PostgreSQL's own directory must be reachable by the postgres user: pytest's tmp is 0700 root.
    pg_root = Path(tempfile.mkdtemp(prefix="ctm-e2e-pg-"))
    home = Path(tempfile.mkdtemp(prefix="ctm-e2e-airflow-"))
    data_dir = home / "data"
    data_dir.mkdir()
    config = home / "pipelines.yaml"
    write_pipelines(config, data_dir)
    sandbox_port = free_port()
    stack = LocalAirflow(
        home=home,
        api_port=free_port(),
        sandbox_port=sandbox_port,
        sandbox_args=SANDBOX_ARGS,
        postgres=PostgresCluster(root=pg_root / "cluster", port=free_port(), bin_dir=bin_dir),
        extra_env={"CALLTOUCH_METRIKA_CONFIG": str(config), "CALLTOUCH_METRIKA_DATA": str(data_dir)},
        # Not the test session's AIRFLOW_CONN_* (tests/conftest.py's sandbox): the stack creates its
        # connections in the metadata DB, pointing at its own sandbox, as `make up` does.
        inherit_connections=False,
    )
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(pg_root, pw.pw_uid, pw.pw_gid)
    try:
        stack.start(timeout=300)
        harness = E2E(stack, SandboxState(stack.sandbox_url), data_dir)
        stack.wait_for_dags([CALLS_DAG, PLANS_DAG, REQUESTS_DAG], timeout=240)
        for dag_id in (CALLS_DAG, PLANS_DAG, REQUESTS_DAG):
            stack.unpause(dag_id, harness.token)
        yield harness
    finally:
        stack.stop()
        shutil.rmtree(pg_root, ignore_errors=True)
        if os.environ.get("CTM_E2E_KEEP"):
            print(f"\ne2e AIRFLOW_HOME kept at {home}")
        else:
            with contextlib.suppress(OSError):
                keep = ARTIFACTS / "e2e-logs"
                shutil.rmtree(keep, ignore_errors=True)
                # Keep the server and task logs as an artefact for post-mortems; drop the rest.
                shutil.copytree(
                    home, keep, ignore=shutil.ignore_patterns("data", "*.json", "*.yaml", "airflow.cfg")
                )
            shutil.rmtree(home, ignore_errors=True)
