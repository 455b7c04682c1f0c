"""A private Redis server (Debian's ``redis-server``) on loopback: the Celery broker of
``EXECUTOR=celery make up`` and of the Celery end-to-end test, and the shared Calltouch rate limit.

No persistence (``--save ""``, no AOF): the broker's queue and the limiter's state live as long as the stack.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from .processes import Component

#: Redis databases: Celery's broker, and the Calltouch rate limit (kept apart for readability).
BROKER_DB = 0
RATE_LIMIT_DB = 1


def find_redis_server() -> Path | None:
    """``redis-server`` on ``$PATH`` (or ``$REDIS_SERVER``), else ``None``."""
    if env := os.environ.get("REDIS_SERVER"):
        return Path(env) if Path(env).is_file() else None
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    return Path(found) if found else None


@dataclass
class RedisServer:
    """``redis-server`` on ``127.0.0.1:port`` with its working directory in ``root``."""

    root: Path
    port: int
    binary: Path

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def broker_url(self) -> str:
        return self.url(BROKER_DB)

    @property
    def rate_limit_url(self) -> str:
        return self.url(RATE_LIMIT_DB)

    def component(self) -> Component:
        """The process, to be started and stopped with the rest of the stack."""
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.root)]
        return Component("redis", argv, self.root / "redis.log")

    def ping(self) -> bool:
        """Whether the server answers ``PING`` (plain RESP over a socket; no client needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False
