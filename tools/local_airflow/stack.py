"""The stack: Airflow's four server processes (+ the sandbox, + PostgreSQL) configured like a deployment.

Shared by ``make up`` (:mod:`tools.local_airflow.__main__`) and the end-to-end tests, so that the tests
start Airflow the same way a user does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.config import DEFAULT_CALLTOUCH_TOKEN, DEFAULT_METRIKA_TOKEN
from sandbox.launch import DEFAULT_SITE_ID, free_port, is_healthy, sandbox_command

from .postgres import PostgresCluster
from .processes import Component, StackError, tail, wait_until

REPO = Path(__file__).resolve().parents[2]

POOL_NAME = "calltouch_api"
POOL_SLOTS = 1  # one task already uses the whole 5 requests/s: see README
POOL_DESCRIPTION = "Calltouch API: 5 requests/s per IP"

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

#: The connections ``make up`` creates in the metadata DB (visible and testable in the UI).
DEFAULT_CONN_IDS = ("calltouch_default", "metrika_default")


def venv_bin() -> Path:
    """The ``bin`` folder of the virtualenv running this code (holds ``airflow``)."""
    return Path(sys.executable).parent


def fernet_key() -> str:
    """A fresh Fernet key (trigger kwargs and connections are encrypted with it in the DB)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def sandbox_connections(url: str) -> dict[str, dict[str, Any]]:
    """``conn_id`` -> connection (``airflow connections import`` JSON) pointing at the sandbox at ``url``.

    ``port`` is 0, not empty: the UI's Test button in the connections list posts ``port: 0`` for a
    connection without a port (``Number(null)``), and Airflow 3.3's test endpoint answers 400 "host or
    port differs from the stored connection" unless the stored port is 0 too. Our hooks ignore a 0 port
    (the port, if any, is in the host URL).
    """
    return {
        "calltouch_default": {
            "conn_type": "calltouch",
            "host": url,
            "port": 0,
            "password": DEFAULT_CALLTOUCH_TOKEN,
            "extra": json.dumps({"site_id": str(DEFAULT_SITE_ID)}),
            "description": "The sandbox (make up); point it at https://api.calltouch.ru for a real account",
        },
        "metrika_default": {
            "conn_type": "yandexmetrika",
            "host": url,
            "port": 0,
            "password": DEFAULT_METRIKA_TOKEN,
            "description": "The sandbox (make up); point it at https://api-metrika.yandex.net for real",
        },
    }


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
    #: Keep ``AIRFLOW_CONN_*`` variables of the calling environment (a user's own connections, which then
    #: win over the ones created in the DB); False for a harness whose environment holds others' (tests).
    inherit_connections: bool = True
    sandbox_args: list[str] = field(default_factory=list)
    log_server_port: int = field(default_factory=free_port)
    components: list[Component] = field(default_factory=list)
    #: The connection ids ``start`` created in the metadata DB (the others existed or come from variables).
    created_connections: list[str] = field(default_factory=list)

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
        if not self.inherit_connections:
            env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
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
                # One log server (tools/local_airflow/log_server.py) on loopback, at a port of its own
                # (not the fixed 8793/8794) so a `make up` and the e2e tests can run side by side,
                # found by the api-server at 127.0.0.1 (Airflow's own log servers listen on 0.0.0.0:
                # the scheduler and triggerer run with --skip-serve-logs).
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tools.local_airflow.log_server.loopback_hostname",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                # Sensors wait in the triggerer. Said explicitly: the airflow.cfg the CLI writes into
                # AIRFLOW_HOME holds `default_deferrable = false`, which our sensors would read as a choice.
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                # The connection form's and list's Test button (off by default in Airflow 3).
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.*",
            }
        )
        if self.postgres is not None and importlib.util.find_spec("asyncpg") is None:
            # Airflow also opens an async engine (asyncpg for PostgreSQL), used only by the multi-team
            # mode, the "wait for a DAG run" endpoint and the task state store. Without asyncpg
            # installed, turn it off rather than fail at import.
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = ""
        env.update(self.extra_env)
        return env

    def cli_env(self) -> dict[str, str]:
        """What the Airflow CLI needs on top of the user's own environment to reach this stack."""
        env = self.env()
        ours = ("AIRFLOW", "CALLTOUCH_METRIKA_", "PYTHONPATH", "PATH")
        return {k: v for k, v in env.items() if k.startswith(ours) or os.environ.get(k) != v}

    def write_env_file(self, path: Path) -> None:
        """A shell file to ``source`` so that ``airflow ...`` talks to this stack (mode 0600: secrets)."""
        lines = ["# Generated by `make up`: `source` it, then run `airflow ...` against the local stack."]
        for key, value in sorted(self.cli_env().items()):
            if key == "PATH":
                lines.append(f'export PATH={shlex.quote(str(venv_bin()))}:"$PATH"')
            else:
                lines.append(f"export {key}={shlex.quote(value)}")
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def create_connections(self, connections: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Create the given connections in the metadata DB, leaving alone each one the user brings:
        an ``AIRFLOW_CONN_<ID>`` variable or a connection of that id already in the DB. Returns the ids
        created."""
        env = self.env()
        wanted = {cid: c for cid, c in connections.items() if f"AIRFLOW_CONN_{cid.upper()}" not in env}
        if not wanted:
            return []
        path = self.home / "default-connections.json"
        path.write_text(json.dumps(wanted, indent=2))
        path.chmod(0o600)
        try:
            out = self.airflow("connections", "import", str(path)).stdout
        finally:
            path.unlink(missing_ok=True)
        return [cid for cid in wanted if f"Imported connection {cid}" in out]

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
            if self.sandbox_url:
                self.created_connections = self.create_connections(sandbox_connections(self.sandbox_url))
            self.write_passwords()
            bin_airflow = str(venv_bin() / "airflow")
            log_server = [sys.executable, "-m", "tools.local_airflow.log_server"]
            log_server += ["--port", str(self.log_server_port)]
            commands = [("log-server", log_server)]
            for name in AIRFLOW_COMPONENTS:
                argv = [bin_airflow, name]
                if name == "api-server":
                    argv += ["--host", "127.0.0.1", "--port", str(self.api_port)]
                if name in ("scheduler", "triggerer"):
                    argv.append("--skip-serve-logs")
                commands.append((name, argv))
            for name, argv in commands:
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
        comp.start(self.env(), REPO)
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
