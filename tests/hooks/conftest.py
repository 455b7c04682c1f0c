"""Fixtures of the hook tests: hooks with quick retry settings, pointed at the session's sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.hooks.metrika import MetrikaHook

#: Retry settings that keep fault tests fast: backoff in milliseconds, Retry-After capped at 0.2 s.
FAST = {"retry_wait_min": 0.01, "retry_wait_max": 0.05, "retry_after_max": 0.2}
DAY = "2026-11-20"


@pytest.fixture
def calltouch(sandbox: Any) -> Callable[..., CalltouchHook]:
    """Factory of CalltouchHooks on ``calltouch_default`` (the sandbox), with fast retries."""

    def make(conn_id: str = "calltouch_default", **kwargs: Any) -> CalltouchHook:
        return CalltouchHook(conn_id, **{"timeout": 10.0, **FAST, **kwargs})

    return make


@pytest.fixture
def metrika(sandbox: Any) -> Callable[..., MetrikaHook]:
    """Factory of MetrikaHooks on ``metrika_default`` (the sandbox), with fast retries."""

    def make(conn_id: str = "metrika_default", **kwargs: Any) -> MetrikaHook:
        return MetrikaHook(conn_id, **{"timeout": 10.0, **FAST, **kwargs})

    return make


@pytest.fixture
def add_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a connection the way a user would: an ``AIRFLOW_CONN_<ID>`` JSON variable."""

    def add(conn_id: str, **fields: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
        return conn_id

    return add


def status_count(state: dict[str, Any], status: str) -> int:
    return int(state["requests"]["by_status"].get(status, 0))


def api_count(state: dict[str, Any], api: str) -> int:
    return int(state["requests"]["by_api"].get(api, 0))


CSV_HEADER = "ClientId,DateTime,PhoneNumber,TalkDuration,CallMissed\n"


def calls_csv(rows: int = 3, client_id: str = "1732000000123456789", ts: int = 1763600000) -> bytes:
    """A small valid Metrika calls CSV (seed 000 columns)."""
    lines = [CSV_HEADER] + [f"{client_id},{ts + i},+79990000{i:03d},{30 + i},0\n" for i in range(rows)]
    return "".join(lines).encode()
