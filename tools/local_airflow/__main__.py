"""``make up`` / ``make down`` / ``make airflow``: the command line of the local stack.

    python -m tools.local_airflow up [--port 8080] [--sandbox-port 8765 | --sandbox-url URL | --no-sandbox]
                                     [--executor local|celery]     # or EXECUTOR=celery make up
    python -m tools.local_airflow status
    python -m tools.local_airflow airflow dags list      # the Airflow CLI against the running stack
    python -m tools.local_airflow down

``up`` prints the UI address and the admin password, unpauses the example pipelines, records every pid in
``.airflow-local/state.json`` and writes ``.airflow-local/env``: ``source`` it and ``airflow ...`` talks
to the stack (the same settings ``airflow`` subcommand / ``make airflow ARGS=...`` uses). ``down`` stops
exactly the process groups and the cluster ``up`` recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .postgres import PostgresCluster, cluster_root, find_postgres_bin
from .processes import StackError, pid_alive, port_is_free, start_ticks, stop_process_group
from .redis import RedisServer, find_redis_server
from .stack import REPO, LocalAirflow, fernet_key, free_port, venv_bin

# DAG ids the example pipelines get (include/config/pipelines.yaml); unpaused by `make up`.
EXAMPLE_DAG_PREFIXES = (
    "calltouch_calls_to_metrika__",
    "calltouch_plans_import",
    "calltouch_requests_export__",
    "example_requests_consumer",
)
#: Also unpaused when the pipelines file has any (an ``account``); sorted first, so an account DAG is
#: unpaused before its pipelines, whose extracts would otherwise fetch their sites themselves.
OPTIONAL_DAG_PREFIXES = ("calltouch_account_extract__",)


def state_dir() -> Path:
    """Where ``up`` keeps its state: ``$LOCAL_AIRFLOW_STATE_DIR``, else ``<repo>/.airflow-local``."""
    return Path(os.environ.get("LOCAL_AIRFLOW_STATE_DIR") or REPO / ".airflow-local")


def env_file() -> Path:
    """The shell file ``up`` writes for the Airflow CLI: ``source .airflow-local/env``."""
    return state_dir() / "env"


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _state_alive(state: Mapping[str, Any]) -> bool:
    return any(pid_alive(p["pid"]) for p in state.get("processes", []))


def _print_info(state: Mapping[str, Any]) -> None:
    print(
        f"""
Airflow UI:   {state["api_url"]}
  user:       admin
  password:   {state["admin_password"]}
Sandbox:      {state.get("sandbox_url") or "(not started)"}
Metadata DB:  {state["db"]}
Executor:     {state.get("executor", "LocalExecutor")}   (Calltouch rate limit: {state.get("rate_limit", "?")})
AIRFLOW_HOME: {state["home"]}   (logs in {state["home"]}/logs)
Airflow CLI:  make airflow ARGS="dags list"   (or: source {env_file()}; airflow dags list)
Stop with:    make down
"""
    )


def cmd_up(args: argparse.Namespace) -> int:
    """``make up``: start the stack in the background, unpause the example pipelines, print the UI."""
    base = state_dir()
    state_file, settings_file = base / "state.json", base / "settings.json"
    base.mkdir(parents=True, exist_ok=True)
    state = _load_json(state_file)
    if state and _state_alive(state):
        print("The local Airflow is already running (make down stops it).")
        _print_info(state)
        return 0

    # Secrets survive `make down`/`make up` so the DB (encrypted with the Fernet key) stays readable.
    settings = _load_json(settings_file)
    if not settings:
        settings = {
            "admin_password": secrets.token_urlsafe(12),
            "fernet_key": fernet_key(),
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret_key": secrets.token_urlsafe(32),
        }
        settings_file.write_text(json.dumps(settings, indent=2))
        settings_file.chmod(0o600)

    api_port = args.port
    if not port_is_free(api_port):
        print(f"port {api_port} is busy; pass --port (or AIRFLOW_PORT=...)", file=sys.stderr)
        return 1
    sandbox_port: int | None = args.sandbox_port
    sandbox_url: str | None = None
    if args.sandbox_url:
        sandbox_port, sandbox_url = None, args.sandbox_url
    elif args.no_sandbox:
        sandbox_port = None
    elif sandbox_port is not None and not port_is_free(sandbox_port):
        print(f"sandbox port {sandbox_port} is busy; pass --sandbox-port", file=sys.stderr)
        return 1

    postgres: PostgresCluster | None = None
    bin_dir = find_postgres_bin()
    if bin_dir is not None and not args.sqlite:
        pg_port = settings.get("pg_port") or 0
        if not pg_port or not port_is_free(pg_port):
            pg_port = free_port()
            settings["pg_port"] = pg_port
            settings_file.write_text(json.dumps(settings, indent=2))
        postgres = PostgresCluster(root=cluster_root(base), port=pg_port, bin_dir=bin_dir)
    else:
        print("PostgreSQL server binaries not found (bash tools/system-deps.sh installs them): using SQLite")

    redis: RedisServer | None = None
    if args.executor == "celery":
        redis_bin = find_redis_server()
        if redis_bin is None:
            print(
                "EXECUTOR=celery needs Debian's redis-server (as root: bash tools/system-deps.sh)",
                file=sys.stderr,
            )
            return 1
        redis = RedisServer(root=base / "redis", port=free_port(), binary=redis_bin)
    stack = LocalAirflow(
        home=base / "home",
        executor=args.executor,
        redis=redis,
        # 8 task instances at once (Celery: 2 workers x 4 slots): the calltouch_api pool's 4 slots never
        # take every slot, so uploads, sensors and reports keep running beside the extracts
        # (bench/agency.py measured this setting).
        parallelism=8,
        api_port=api_port,
        sandbox_port=sandbox_port,
        sandbox_url=sandbox_url,
        postgres=postgres,
        admin_password=settings["admin_password"],
        fernet_key=settings["fernet_key"],
        jwt_secret=settings["jwt_secret"],
        api_secret_key=settings["api_secret_key"],
    )
    print(f"Starting Airflow in {stack.home} (logs: {stack.home}/*.log) ...")
    try:
        stack.start()
    except StackError as exc:
        print(f"make up failed: {exc}", file=sys.stderr)
        return 1

    state = {
        "home": str(stack.home),
        "api_url": stack.api_url,
        "sandbox_url": stack.sandbox_url,
        "admin_password": stack.admin_password,
        "db": stack.db_url,
        "executor": stack.env()["AIRFLOW__CORE__EXECUTOR"],
        "rate_limit": stack.limiter_backend,
        "cli_env": stack.cli_env(),
        "processes": [
            {"name": c.name, "pid": c.pid, "start_ticks": start_ticks(c.pid), "argv": c.argv}
            for c in stack.components
            if c.pid is not None
        ],
        "postgres": (
            {"root": str(postgres.root), "port": postgres.port, "bin_dir": str(postgres.bin_dir)}
            if postgres
            else None
        ),
    }
    state_file.write_text(json.dumps(state, indent=2))
    state_file.chmod(0o600)
    stack.write_env_file(env_file())

    # Unpause the example pipelines once the DAG processor has parsed them.
    try:
        token = stack.token()
        deadline = time.monotonic() + args.parse_timeout
        unpaused: set[str] = set()
        seen: set[str] = set()
        stable_since = time.monotonic()
        while True:
            dag_ids = set(stack.dag_ids(token))
            if dag_ids != seen:
                seen, stable_since = dag_ids, time.monotonic()
            for dag_id in sorted(dag_ids - unpaused):
                if dag_id.startswith(EXAMPLE_DAG_PREFIXES + OPTIONAL_DAG_PREFIXES):
                    stack.unpause(dag_id, token)
                    unpaused.add(dag_id)
            every_kind = all(any(d.startswith(p) for d in unpaused) for p in EXAMPLE_DAG_PREFIXES)
            # Done when every kind is there, or the DAG processor has found nothing new for a while
            # (a pipelines file without plans or requests export yields fewer DAGs).
            settled = bool(seen) and time.monotonic() - stable_since > 20
            if every_kind or settled or time.monotonic() > deadline:
                break
            time.sleep(2)
        print("Unpaused: " + (", ".join(sorted(unpaused)) or "(no example pipelines found in dags/ yet)"))
        if stack.created_connections:
            print(f"Connections created in the metadata DB: {', '.join(stack.created_connections)}")
    except Exception as exc:
        print(f"warning: could not unpause the example pipelines: {exc}", file=sys.stderr)

    _print_info(state)
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    """``make down``: stop exactly the process groups and the cluster ``make up`` recorded."""
    state_file = state_dir() / "state.json"
    state = _load_json(state_file)
    if not state:
        print(f"Nothing to stop (no {state_file}).")
        return 0
    for p in reversed(state.get("processes", [])):
        pid = p["pid"]
        if not pid_alive(pid):
            continue
        # Ours: still the session leader make up created, started at the recorded time.
        try:
            is_ours = os.getsid(pid) == pid and start_ticks(pid) == p.get("start_ticks")
        except OSError:
            is_ours = False
        if not is_ours:
            print(f"skipping pid {pid} ({p['name']}): it is no longer the process make up started")
            continue
        print(f"stopping {p['name']} (pid {pid})")
        stop_process_group(pid)
    if pg := state.get("postgres"):
        cluster = PostgresCluster(root=Path(pg["root"]), port=pg["port"], bin_dir=Path(pg["bin_dir"]))
        if cluster.pid is not None:
            print(f"stopping PostgreSQL (pid {cluster.pid})")
            cluster.stop()
    state_file.unlink(missing_ok=True)
    env_file().unlink(missing_ok=True)
    print("Stopped.")
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    """Print what ``make up`` started and whether it still runs."""
    state = _load_json(state_dir() / "state.json")
    if not state:
        print("Not running.")
        return 1
    for p in state.get("processes", []):
        print(f"{p['name']:<14} pid {p['pid']:<8} {'running' if pid_alive(p['pid']) else 'stopped'}")
    _print_info(state)
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """``make airflow ARGS="dags list"``: the Airflow CLI with the settings of the running stack."""
    state = _load_json(state_dir() / "state.json")
    if not state or not _state_alive(state):
        print("The local Airflow is not running: start it with `make up`.", file=sys.stderr)
        return 1
    env = {**os.environ, **state["cli_env"]}
    env["PATH"] = f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    argv = list(args.args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return subprocess.run([str(venv_bin() / "airflow"), *argv], env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_airflow", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local Airflow + sandbox in the background")
    up.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    up.add_argument("--sandbox-port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8765")))
    up.add_argument("--sandbox-url", default=os.environ.get("SANDBOX_URL"), help="use a running sandbox")
    up.add_argument(
        "--no-sandbox",
        action="store_true",
        default=os.environ.get("NO_SANDBOX", "") not in ("", "0"),
        help="start no sandbox and set no connections (use your own AIRFLOW_CONN_* or the UI)",
    )
    up.add_argument("--sqlite", action="store_true", help="SQLite instead of a private PostgreSQL")
    up.add_argument(
        "--executor",
        choices=("local", "celery"),
        default=os.environ.get("EXECUTOR", "local").lower() or "local",
        help="LocalExecutor, or CeleryExecutor with a private Redis and two workers (EXECUTOR=celery)",
    )
    up.add_argument("--parse-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="show what `up` started").set_defaults(func=cmd_status)
    cli = sub.add_parser("airflow", help="run the Airflow CLI against the running stack")
    cli.add_argument("args", nargs=argparse.REMAINDER, help="e.g. dags list")
    cli.set_defaults(func=cmd_airflow)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
