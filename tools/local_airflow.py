"""A local Airflow, run like production: ``make up`` / ``make down``, and the end-to-end tests' harness.

``python tools/local_airflow.py up`` starts, each in its own process group:

* a private PostgreSQL cluster (Debian's ``postgresql`` binaries, ``initdb``/``pg_ctl``) as the metadata
  DB, falling back to SQLite when no PostgreSQL server is installed;
* the API emulator (``python -m sandbox``) on loopback;
* ``airflow api-server``, ``airflow scheduler``, ``airflow dag-processor`` and ``airflow triggerer``
  (LocalExecutor, SimpleAuthManager with one ``admin`` user), sharing one Fernet key, JWT secret and
  API secret key, with the ``calltouch_default`` / ``metrika_default`` connections pointing at the
  sandbox through ``AIRFLOW_CONN_*`` variables and the ``calltouch_api`` pool created.

It prints the UI address and the admin password, unpauses the example pipelines, and records every pid
in ``.airflow-local/state.json``; ``down`` stops exactly those process groups and that cluster.

The :class:`LocalAirflow` class is shared with ``tests/e2e`` so that the tests start Airflow the same
way a user does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Where ``up`` keeps its state: ``$LOCAL_AIRFLOW_STATE_DIR``, else ``<repo>/.airflow-local``."""
    return Path(os.environ.get("LOCAL_AIRFLOW_STATE_DIR") or REPO / ".airflow-local")


sys.path.insert(0, str(REPO))  # run as `python tools/local_airflow.py`: make `sandbox` importable
# One place knows how to start the sandbox and point the connections at it.
from sandbox.launch import connection_env as sandbox_connections  # noqa: E402
from sandbox.launch import free_port, is_healthy, sandbox_command  # noqa: E402

POOL_NAME = "calltouch_api"
POOL_SLOTS = 1  # one task already uses the whole 5 requests/s: see README
POOL_DESCRIPTION = "Calltouch API: 5 requests/s per account"

# DAG ids the example pipelines get (include/config/pipelines.yaml); unpaused by `make up`.
EXAMPLE_DAG_PREFIXES = (
    "calltouch_calls_to_metrika__",
    "calltouch_plans_import",
    "calltouch_requests_export__",
    "example_requests_consumer",
)

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


class StackError(RuntimeError):
    """A part of the local stack failed to start; the message names it and quotes its log."""


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``127.0.0.1:port``."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def venv_bin() -> Path:
    """The ``bin`` folder of the virtualenv running this script (holds ``airflow``)."""
    return Path(sys.executable).parent


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def fernet_key() -> str:
    """A fresh Fernet key (trigger kwargs and connections are encrypted with it in the DB)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# --------------------------------------------------------------------------------------------------
# PostgreSQL


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` holding ``initdb`` and ``pg_ctl`` (or ``$PG_BIN``)."""
    candidates: list[Path] = []
    if env := os.environ.get("PG_BIN"):
        candidates.append(Path(env))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file() and (c / "postgres").is_file():
            return c
    return None


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster in ``root`` listening on ``127.0.0.1:port`` only.

    ``initdb`` refuses to run as root, so as root every server command runs as the ``postgres`` system
    user (created by Debian's package) and ``root`` is handed to that user.
    """

    root: Path
    port: int
    bin_dir: Path
    user: str = "airflow"
    database: str = "airflow"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL Airflow uses."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _owner_cmd(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", "postgres", "--", *argv]

    def _run(self, argv: list[str], what: str, timeout: float = 120) -> None:
        proc = subprocess.run(
            self._owner_cmd(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise StackError(
                f"PostgreSQL {what} failed ({' '.join(argv[:2])}): {proc.stdout}{proc.stderr}\n"
                f"{tail(self.log_file)}"
            )

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def init(self) -> None:
        """``initdb`` a new cluster with trust authentication on loopback (a test/dev database)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise StackError("running as root but there is no 'postgres' system user") from exc
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections; create the database if missing."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "start",
        )
        self._create_database()

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from ``postmaster.pid`` (None when the server is not running)."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        pid = int(first)
        return pid if pid_alive(pid) else None

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` for this data directory only."""
        if self.pid is None:
            return
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"],
            "stop",
        )

    def connect(self) -> Any:
        """A psycopg2 connection to the Airflow database (for tests reading the metadata)."""
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname=self.database)


# --------------------------------------------------------------------------------------------------
# Processes


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22): a pid's identity.

    A pid recycled after ``make up`` has another start time, so ``make down`` never signals a stranger.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


def stop_process_group(pgid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM the process group ``pgid`` (a session leader this module started), then SIGKILL it."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        # Reap our own child if it is one (otherwise it lingers as a zombie and the group stays).
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pgid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, 0)


@dataclass
class Component:
    """One background process: its name, command line and log; a session (process group) of its own."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def stop(self) -> None:
        if self.pid is not None:
            stop_process_group(self.pid)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, alive: Callable[[], str | None] | None = None
) -> None:
    """Poll ``check`` every 0.5 s until it is true; fail with ``what`` after ``timeout`` seconds.

    ``alive`` returns an error message when a process the wait depends on has died (fail fast).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if alive is not None and (problem := alive()):
            raise StackError(f"while waiting for {what}: {problem}")
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------------
# The stack


@dataclass
class LocalAirflow:
    """Airflow's four server processes (+ the sandbox, + PostgreSQL) configured like a deployment.

    :param home: ``AIRFLOW_HOME`` (logs, passwords file, SQLite DB when no PostgreSQL).
    :param api_port: port of ``airflow api-server`` on 127.0.0.1 (the UI and the execution API).
    :param sandbox_port: port of ``python -m sandbox``; ``None`` -> do not start a sandbox and use
        ``sandbox_url`` (or no sandbox connections at all).
    :param postgres: a cluster to use as the metadata DB; ``None`` -> SQLite in ``home``.
    :param dags_folder: the DAGs folder (our ``dags/`` by default).
    :param extra_env: more environment for every process (e.g. ``CALLTOUCH_METRIKA_CONFIG``).
    :param sandbox_args: more ``python -m sandbox`` options (e.g. ``--status-step-seconds 5``).
    """

    home: Path
    api_port: int
    sandbox_port: int | None = None
    sandbox_url: str | None = None
    postgres: PostgresCluster | None = None
    dags_folder: Path = REPO / "dags"
    plugins_folder: Path = REPO / "plugins"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    fernet_key: str = field(default_factory=fernet_key)
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    api_secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    extra_env: dict[str, str] = field(default_factory=dict)
    sandbox_args: list[str] = field(default_factory=list)
    worker_log_port: int = field(default_factory=free_port)
    trigger_log_port: int = field(default_factory=free_port)
    components: list[Component] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.sandbox_port is not None and self.sandbox_url is None:
            self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"

    # ---- configuration -------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def db_url(self) -> str:
        if self.postgres is not None:
            return self.postgres.url
        return f"sqlite:///{self.home / 'airflow.db'}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def env(self) -> dict[str, str]:
        """The environment every Airflow process (and CLI call) gets."""
        env = dict(os.environ)
        env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": self.api_secret_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                # New DAG files are picked up within seconds, not the default five minutes.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_dir),
                # The scheduler's and triggerer's log servers (fixed 8793/8794 by default) get ports of
                # their own, so a `make up` and the e2e tests can run side by side.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.*",
            }
        )
        if self.postgres is not None and importlib.util.find_spec("asyncpg") is None:
            # Airflow also opens an async engine (asyncpg for PostgreSQL), used only by the multi-team
            # mode, the "wait for a DAG run" endpoint and the task state store. Without asyncpg
            # installed, turn it off rather than fail at import.
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = ""
        if self.sandbox_url:
            env.update(sandbox_connections(self.sandbox_url))
        env.update(self.extra_env)
        return env

    def write_passwords(self) -> None:
        """Fix the admin password before the API server starts (it only generates missing ones)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.passwords_file.write_text(json.dumps({"admin": self.admin_password}) + "\n")
        self.passwords_file.chmod(0o600)

    # ---- CLI -----------------------------------------------------------------------------------

    def airflow(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with the stack's environment; raise with its output on failure."""
        proc = subprocess.run(
            [str(venv_bin() / "airflow"), *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise StackError(
                f"`airflow {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, *, timeout: float = 300) -> None:
        """Start PostgreSQL (if any), migrate, create the pool, start the sandbox and the processes.

        On any failure everything already started is stopped before the error propagates.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            if self.postgres is not None:
                if not self.postgres.initialised:
                    self.postgres.init()
                self.postgres.start()
            if self.sandbox_port is not None:
                self._start_sandbox()
            self.airflow("db", "migrate", timeout=timeout)
            self.airflow("pools", "set", POOL_NAME, str(POOL_SLOTS), POOL_DESCRIPTION)
            self.write_passwords()
            bin_airflow = str(venv_bin() / "airflow")
            for name in AIRFLOW_COMPONENTS:
                argv = [bin_airflow, name]
                if name == "api-server":
                    argv += ["--host", "127.0.0.1", "--port", str(self.api_port)]
                comp = Component(name, argv, self.home / f"{name}.log")
                comp.start(self.env(), self.home)
                self.components.append(comp)
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def _start_sandbox(self) -> None:
        comp = Component(
            "sandbox",
            sandbox_command(self.sandbox_port, args=self.sandbox_args),
            self.home / "sandbox.log",
        )
        env = self.env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        comp.start(env, REPO)
        self.components.append(comp)
        wait_until(
            lambda: is_healthy(self.sandbox_url, timeout=2),
            timeout=60,
            what=f"the sandbox on {self.sandbox_url}",
            alive=self._dead_component,
        )

    def _dead_component(self) -> str | None:
        for comp in self.components:
            if not comp.running:
                return f"{comp.name} exited; its log ({comp.log}) ends with:\n{tail(comp.log)}"
        return None

    def health(self) -> dict[str, Any]:
        import requests

        r = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
        r.raise_for_status()
        return r.json()

    def wait_healthy(self, *, timeout: float = 300) -> None:
        """Wait until the API answers and reports the scheduler, triggerer and DAG processor healthy."""

        def ok() -> bool:
            h = self.health()
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all(h.get(p, {}).get("status") == "healthy" for p in parts)

        wait_until(
            ok, timeout=timeout, what=f"Airflow on {self.api_url} to be healthy", alive=self._dead_component
        )

    def stop(self) -> None:
        """Stop every process this object started (in reverse order), then PostgreSQL."""
        for comp in reversed(self.components):
            with contextlib.suppress(Exception):
                comp.stop()
        self.components.clear()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.stop()

    # ---- REST API ------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT for the admin user from ``POST /auth/token``."""
        import requests

        r = requests.post(
            f"{self.api_url}/auth/token",
            json={"username": "admin", "password": self.admin_password},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> Any:
        """Call the public REST API (``/api/v2`` + ``path``) as admin; return the JSON body."""
        import requests

        r = requests.request(
            method,
            f"{self.api_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {token or self.token()}"},
            timeout=30,
            **kwargs,
        )
        if not r.ok:
            raise StackError(f"{method} {path} -> {r.status_code}: {r.text[:2000]}")
        return r.json() if r.content else None

    def dag_ids(self, token: str | None = None) -> list[str]:
        """Every DAG the DAG processor has serialised (via the REST API)."""
        body = self.api("GET", "/dags", token=token, params={"limit": 1000})
        return [d["dag_id"] for d in body["dags"]]

    def wait_for_dags(self, dag_ids: Iterable[str], *, timeout: float = 180) -> None:
        """Wait until each of ``dag_ids`` is parsed and known to the API."""
        wanted = set(dag_ids)
        token = self.token()

        def parsed() -> bool:
            return wanted <= set(self.dag_ids(token))

        wait_until(
            parsed, timeout=timeout, what=f"DAGs {sorted(wanted)} to be parsed", alive=self._dead_component
        )

    def unpause(self, dag_id: str, token: str | None = None) -> None:
        self.api("PATCH", f"/dags/{dag_id}", token=token, json={"is_paused": False})


# --------------------------------------------------------------------------------------------------
# make up / make down


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
AIRFLOW_HOME: {state["home"]}   (logs in {state["home"]}/logs)
Stop with:    make down
"""
    )


def _cluster_root(base: Path) -> Path:
    """``<state dir>/postgres``, unless root runs us and the ``postgres`` user cannot reach it there
    (a repository under a private home folder): then a folder of its own in the temp directory."""
    root = base / "postgres"
    if os.geteuid() != 0:
        return root
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(base)], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return root
    digest = hashlib.sha1(str(base.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"calltouch-metrika-postgres-{digest}"


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
        postgres = PostgresCluster(root=_cluster_root(base), port=pg_port, bin_dir=bin_dir)
    else:
        print("PostgreSQL server binaries not found (bash tools/system-deps.sh installs them): using SQLite")

    stack = LocalAirflow(
        home=base / "home",
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
                if dag_id.startswith(EXAMPLE_DAG_PREFIXES):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    up.add_argument("--parse-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="show what `up` started").set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
