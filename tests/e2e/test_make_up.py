"""``make up`` / ``make airflow`` / ``make down`` (``python -m tools.local_airflow up|airflow|down``) as a
user runs them.

``up`` must leave a working UI (the printed admin password logs in), the pool, the sandbox connections in
the metadata DB (testable with the Test button's request), unpaused example pipelines, only loopback
listeners, and an Airflow CLI that reaches the stack (the README's backfill example succeeds through
``make airflow`` and through ``source .airflow-local/env``); ``down`` must stop exactly what ``up``
started: every recorded process group and the PostgreSQL cluster, and nothing else.
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

from tools.local_airflow import __main__ as cli
from tools.local_airflow.postgres import PostgresCluster, find_postgres_bin
from tools.local_airflow.processes import pid_alive
from tools.local_airflow.stack import AIRFLOW_COMPONENTS, POOL_NAME, POOL_SLOTS, free_port

from .conftest import CALLS_DAG, PIPELINE, REPO, backfill_days

COMMAND = [sys.executable, "-m", "tools.local_airflow"]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A private state dir (reachable by the ``postgres`` user); whatever is left is stopped after."""
    if find_postgres_bin() is None:
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
        subprocess.run([*COMMAND, "down"], env=env, cwd=REPO, capture_output=True, timeout=120, check=False)
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
        [*COMMAND, *args],
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
    # A user without connections of their own (not the test session's AIRFLOW_CONN_*): `up` creates them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["CALLTOUCH_METRIKA_CONFIG"] = str(config)
    api_port, sandbox_port = free_port(), free_port()
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
        assert "Connections created in the metadata DB: calltouch_default, metrika_default" in out, out

        token = requests.post(
            f"{url}/auth/token", json={"username": "admin", "password": password.group(1)}, timeout=30
        )
        assert token.status_code in (200, 201), token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        pool = requests.get(f"{url}/api/v2/pools/{POOL_NAME}", headers=headers, timeout=30)
        assert pool.ok and pool.json()["slots"] == POOL_SLOTS, pool.text
        dag = requests.get(f"{url}/api/v2/dags/{CALLS_DAG}", headers=headers, timeout=30)
        assert dag.ok and dag.json()["is_paused"] is False, dag.text
        assert requests.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/health", timeout=10).ok

        _check_connections_are_in_the_db_and_test_green(url, headers)

        state = cli._load_json(state_dir / "state.json")
        names = {p["name"] for p in state["processes"]}
        assert names == {"sandbox", "log-server", *AIRFLOW_COMPONENTS}
        pids = [p["pid"] for p in state["processes"]]
        cluster = PostgresCluster(
            root=Path(state["postgres"]["root"]),
            port=state["postgres"]["port"],
            bin_dir=Path(state["postgres"]["bin_dir"]),
        )
        postmaster = cluster.pid
        assert postmaster is not None and all(pid_alive(p) for p in pids)
        listening = _listening(set(pids))
        assert listening and all(host == "127.0.0.1" for host, _ in listening), listening

        _check_the_cli_reaches_the_stack(state_dir, env, url, headers)

        out = _run(state_dir, "down", env=env, timeout=180)
        assert "Stopped." in out, out
        deadline = time.monotonic() + 30
        while any(pid_alive(p) for p in [*pids, postmaster]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in pids if pid_alive(p)], out
        assert cluster.pid is None and not pid_alive(postmaster)
        left = _live_members(set(pids))  # nothing of their process groups is left either
        assert not left, f"processes left in the groups make up started: {left}"
        assert bystander.poll() is None, "make down stopped a process it did not start"
        assert not (state_dir / "state.json").exists() and not (state_dir / "env").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(bystander.pid, signal.SIGTERM)
        bystander.wait(10)


def _listening(groups: set[int]) -> list[tuple[str, int]]:
    """``(address, port)`` of every TCP socket in LISTEN state held by a process of ``groups``."""
    inodes: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[-1].split()[2]) not in groups:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                addr, port = fields[1].split(":")
                raw = bytes.fromhex(addr)
                if width == 8:
                    host = ".".join(str(b) for b in raw[::-1])
                elif raw == bytes(10) + b"\xff\xff" + raw[12:] or raw.strip(b"\0") == b"":
                    host = "::" if raw == bytes(16) else ".".join(str(b) for b in raw[12:][::-1])
                else:
                    host = addr
                found.append((host, int(port, 16)))
    return found


def _check_connections_are_in_the_db_and_test_green(url: str, headers: dict[str, str]) -> None:
    """The default connections are rows of the metadata DB (listed in the UI), and the request the
    connections list's Test button sends (``port: Number(null)`` = 0, the masked password) succeeds."""
    listed = requests.get(f"{url}/api/v2/connections", headers=headers, timeout=30)
    assert listed.ok, listed.text
    conns = {c["connection_id"]: c for c in listed.json()["connections"]}
    assert {"calltouch_default", "metrika_default"} <= set(conns), sorted(conns)
    assert conns["metrika_default"]["conn_type"] == "yandexmetrika"
    for conn_id in ("calltouch_default", "metrika_default"):
        c = conns[conn_id]
        body = {
            "connection_id": conn_id,
            "conn_type": c["conn_type"],
            "description": c["description"] or "",
            "extra": c["extra"] or "{}",
            "host": c["host"] or "",
            "login": c["login"] or "",
            "password": c["password"] or "",
            "port": c["port"] or 0,
            "schema": c["schema"] or "",
        }
        tested = requests.post(f"{url}/api/v2/connections/test", headers=headers, json=body, timeout=120)
        assert tested.ok, tested.text
        assert tested.json()["status"] is True, tested.json()
        if conn_id == "metrika_default":
            assert "20001" in tested.json()["message"], tested.json()  # the counters the token reaches


def _check_the_cli_reaches_the_stack(
    state_dir: Path, env: dict[str, str], url: str, headers: dict[str, str]
) -> None:
    """``make airflow ARGS=...`` and ``source .airflow-local/env`` both reach the running stack: the
    README's backfill example creates a backfill whose run succeeds."""
    out = _run(state_dir, "airflow", "dags", "list", "--output", "plain", env=env, timeout=300)
    assert CALLS_DAG in out, out
    (day,) = backfill_days(1, end_days_ago=3)
    sourced = subprocess.run(
        [
            "bash",
            "-c",
            f'source "{state_dir}/env" && airflow backfill create --dag-id {CALLS_DAG} '
            f"--from-date {day} --to-date {day}",
        ],
        env={k: v for k, v in env.items() if not k.startswith("AIRFLOW")},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert sourced.returncode == 0, f"{sourced.stdout}\n{sourced.stderr}"
    deadline = time.monotonic() + 420
    while True:
        runs = requests.get(f"{url}/api/v2/dags/{CALLS_DAG}/dagRuns", headers=headers, timeout=30).json()
        states = [r["state"] for r in runs["dag_runs"] if r["run_type"] == "backfill"]
        if states and all(s in ("success", "failed") for s in states):
            break
        assert time.monotonic() < deadline, f"the backfill did not finish: {states}"
        time.sleep(5)
    assert states == ["success"], runs
