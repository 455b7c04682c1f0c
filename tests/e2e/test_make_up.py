"""``make up`` / ``make down`` (``tools/local_airflow.py up|down``) as a user runs them.

``up`` must leave a working UI (the printed admin password logs in), the pool, the sandbox connections
and unpaused example pipelines; ``down`` must stop exactly what ``up`` started: every recorded process
group and the PostgreSQL cluster, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from .conftest import CALLS_DAG, PIPELINE, REPO, la

SCRIPT = REPO / "tools" / "local_airflow.py"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A private state dir (reachable by the ``postgres`` user); whatever is left is stopped after."""
    if la.find_postgres_bin() is None:
        pytest.skip(
            "PostgreSQL server binaries not found (`bash tools/system-deps.sh` installs them as root)"
        )
    path = Path(tempfile.mkdtemp(prefix="ctm-make-up-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        # Safety net: if the test failed half-way, stop what `up` recorded.
        env = {**os.environ, "LOCAL_AIRFLOW_STATE_DIR": str(path)}
        subprocess.run(
            [sys.executable, str(SCRIPT), "down"], env=env, capture_output=True, timeout=120, check=False
        )
        subprocess.run(["rm", "-rf", str(path)], check=False)


def _live_members(groups: set[int]) -> list[tuple[int, str]]:
    """``(pid, command)`` of every live (non-zombie) process whose process group is in ``groups``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[-1].split()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append((int(proc.name), cmd[:120]))
    return found


def _run(state_dir: Path, *args: str, env: dict[str, str], timeout: float = 420) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**env, "LOCAL_AIRFLOW_STATE_DIR": str(state_dir)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_up_serves_the_ui_and_down_stops_exactly_what_up_started(state_dir: Path) -> None:
    # A pipelines file whose start_date is tomorrow: nothing gets scheduled while the test runs.
    config = state_dir / "pipelines.yaml"
    config.write_text(
        f"pipelines:\n  - name: {PIPELINE}\n    site_id: 10001\n    counter_id: 20001\n"
        f"    start_date: {date.today() + timedelta(days=1)}\n    storage_root: {state_dir / 'data'}\n"
    )
    env = {**os.environ, "CALLTOUCH_METRIKA_CONFIG": str(config)}
    api_port, sandbox_port = la.free_port(), la.free_port()
    # A bystander in a session of its own, like the processes `up` starts: `down` must not touch it.
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        out = _run(
            state_dir,
            "up",
            "--port",
            str(api_port),
            "--sandbox-port",
            str(sandbox_port),
            "--parse-timeout",
            "120",
            env=env,
        )
        url = f"http://127.0.0.1:{api_port}"
        assert f"Airflow UI:   {url}" in out, out
        password = re.search(r"password:\s+(\S+)", out)
        assert password, out
        assert CALLS_DAG in out.split("Unpaused:", 1)[1].splitlines()[0], out

        token = requests.post(
            f"{url}/auth/token", json={"username": "admin", "password": password.group(1)}, timeout=30
        )
        assert token.status_code in (200, 201), token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        pool = requests.get(f"{url}/api/v2/pools/{la.POOL_NAME}", headers=headers, timeout=30)
        assert pool.ok and pool.json()["slots"] == la.POOL_SLOTS, pool.text
        dag = requests.get(f"{url}/api/v2/dags/{CALLS_DAG}", headers=headers, timeout=30)
        assert dag.ok and dag.json()["is_paused"] is False, dag.text
        assert requests.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/health", timeout=10).ok

        state = la._load_json(state_dir / "state.json")
        names = {p["name"] for p in state["processes"]}
        assert names == {"sandbox", *la.AIRFLOW_COMPONENTS}
        pids = [p["pid"] for p in state["processes"]]
        cluster = la.PostgresCluster(
            root=Path(state["postgres"]["root"]),
            port=state["postgres"]["port"],
            bin_dir=Path(state["postgres"]["bin_dir"]),
        )
        postmaster = cluster.pid
        assert postmaster is not None and all(la.pid_alive(p) for p in pids)

        out = _run(state_dir, "down", env=env, timeout=180)
        assert "Stopped." in out, out
        deadline = time.monotonic() + 30
        while any(la.pid_alive(p) for p in [*pids, postmaster]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in pids if la.pid_alive(p)], out
        assert cluster.pid is None and not la.pid_alive(postmaster)
        left = _live_members(set(pids))  # nothing of their process groups is left either
        assert not left, f"processes left in the groups make up started: {left}"
        assert bystander.poll() is None, "make down stopped a process it did not start"
        assert not (state_dir / "state.json").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(bystander.pid, signal.SIGTERM)
        bystander.wait(10)
