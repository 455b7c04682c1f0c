"""Start the sandbox as a subprocess and point Airflow's connections at it.

One piece for everything that runs the emulator next to Airflow: the test session
(``tests/conftest.py``), ``make demo`` (``tools/demo.py``), ``make up`` (``tools/local_airflow/``) and
the benchmarks. Standard library only, so it can be imported before anything else is set up.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from sandbox.config import DEFAULT_CALLTOUCH_TOKEN, DEFAULT_METRIKA_TOKEN

REPO = Path(__file__).resolve().parent.parent
#: The site the default ``calltouch_default`` connection names (owned by the default token).
DEFAULT_SITE_ID = 10001


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection_env(url: str) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` variables that point the default connections at the sandbox at ``url``.

    Exactly the forms a user sets for production, with the sandbox's host and tokens.
    """
    return {
        "AIRFLOW_CONN_CALLTOUCH_DEFAULT": json.dumps(
            {
                "conn_type": "calltouch",
                "host": url,
                "password": DEFAULT_CALLTOUCH_TOKEN,
                "extra": {"site_id": str(DEFAULT_SITE_ID)},
            }
        ),
        "AIRFLOW_CONN_METRIKA_DEFAULT": json.dumps(
            {"conn_type": "yandexmetrika", "host": url, "password": DEFAULT_METRIKA_TOKEN}
        ),
    }


def is_healthy(url: str, timeout: float = 1.0) -> bool:
    """Whether a sandbox answers ``GET /_sandbox/health`` at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def sandbox_command(port: int, *, host: str = "127.0.0.1", args: Sequence[str] = ()) -> list[str]:
    """The command line that serves the sandbox on ``host:port`` with this interpreter."""
    return [sys.executable, "-m", "sandbox", "--host", host, "--port", str(port), *args]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    """Wait until the sandbox at ``url`` answers; raise ``RuntimeError`` quoting its log if it dies or hangs."""
    deadline = time.monotonic() + timeout
    while not is_healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"the sandbox did not start on {url}; its log ({log_path}):\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        time.sleep(0.1)


def start(log_path: Path, *, args: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``python -m sandbox`` on a free loopback port; return the process and its URL once healthy."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            sandbox_command(port, args=args), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    wait_healthy(url, proc, log_path)
    return proc, url


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate the sandbox started by :func:`start` (kill it if it does not exit in ``timeout``)."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
