"""Shared test setup.

* Airflow is configured *before* it is imported: a throw-away ``AIRFLOW_HOME``, our ``dags/`` and
  ``plugins/`` folders, no examples (see ../shared/airflow3-notes.md §6).
* ``sandbox_server`` starts the real emulator (``python -m sandbox``) on a free loopback port
  once per session; ``sandbox`` resets it before each test and gives a small control client.
* The default connections point at the sandbox through ``AIRFLOW_CONN_*`` variables, exactly as
  a user would set them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ctm-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
os.environ["CALLTOUCH_METRIKA_DATA"] = str(_AIRFLOW_HOME / "data")

# Property tests explore a fixed sequence of examples, so `make test` is deterministic (the same
# examples on every run and machine); HYPOTHESIS_PROFILE=explore searches anew.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
_hypothesis_settings.register_profile("explore", derandomize=False)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from sandbox import launch  # noqa: E402
from sandbox.launch import connection_env  # noqa: E402


class SandboxClient:
    """Drives the sandbox's test-only endpoints (``/_sandbox/...``) over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        r = requests.post(f"{self.url}{path}", json=body or {}, timeout=30)
        r.raise_for_status()
        return r.json() if r.content else None

    def reset(self, **config: Any) -> None:
        """Forget every upload, import, counter and fault; apply ``config`` over the defaults."""
        self._post("/_sandbox/reset", config)

    def configure(self, **config: Any) -> None:
        self._post("/_sandbox/config", config)

    def faults(self, **faults: Any) -> None:
        self._post("/_sandbox/faults", faults)

    def state(self) -> dict[str, Any]:
        import requests

        r = requests.get(f"{self.url}/_sandbox/state", timeout=30)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[str]:
    """Start ``python -m sandbox`` on a free loopback port for the whole session; yield its URL."""
    external = os.environ.get("SANDBOX_URL")
    if external:
        os.environ.update(connection_env(external))
        yield external
        return
    proc, url = launch.start(_AIRFLOW_HOME / "sandbox.log")
    try:
        os.environ.update(connection_env(url))
        yield url
    finally:
        launch.stop(proc)


@pytest.fixture
def sandbox(sandbox_server: str) -> SandboxClient:
    """The session's sandbox, reset to its defaults before the test."""
    client = SandboxClient(sandbox_server)
    client.reset()
    return client


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the session's AIRFLOW_HOME (needed by ``dag.test()``)."""
    from airflow.utils import db

    db.resetdb() if os.environ.get("CTM_RESET_DB") else db.initdb()
    return _AIRFLOW_HOME
