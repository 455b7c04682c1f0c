"""A private PostgreSQL cluster (Debian's ``postgresql`` binaries, ``initdb``/``pg_ctl``) on loopback:
the metadata DB of ``make up`` and of the end-to-end tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import StackError, pid_alive, tail


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


def cluster_root(base: Path) -> Path:
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
