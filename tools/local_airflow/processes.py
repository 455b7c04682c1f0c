"""Process supervision for the local stack: start a process in a session of its own, know it again
later (pid + start time), stop exactly its process group, wait for a condition.

Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


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


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


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
    """SIGTERM the process group ``pgid`` (a session leader this package started), then SIGKILL it."""
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
    """Poll ``check`` every 0.5 s until it is true; raise :class:`StackError` naming ``what`` after
    ``timeout`` seconds.

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
