"""What the shared transport needs to know about an API's error answers, as data and callables.

The transport (``_transport.py``) never names an API: each hook module describes its API with an
:class:`ApiSpec` (``CALLTOUCH`` in ``hooks/calltouch.py``, ``METRIKA`` in ``hooks/metrika.py``):
how its error bodies translate into the typed errors of :mod:`calltouch_metrika.exceptions`, how a 429
reads (retry, or give up because a long quota is exhausted) and what to tell the user when 429s
outlast the retries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from calltouch_metrika.exceptions import CalltouchMetrikaError
from calltouch_metrika.hooks._masking import Secrets


def json_or_none(text: str) -> Any:
    """The JSON document in ``text``, or ``None`` if it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


class ErrorParser(Protocol):
    """Translates a non-retryable error answer (status, body) into a typed error (``status_code`` set)."""

    def __call__(self, status: int, text: str, *, what: str, secrets: Secrets) -> CalltouchMetrikaError: ...


@dataclass(frozen=True)
class QuotaAnswer:
    """How one 429 answer reads.

    :param detail: secret-free description for log lines (e.g. ``quota_requests_by_ip: ...``).
    :param final: set when the quota will not come back within a task (a daily budget): the message of
        the :class:`~calltouch_metrika.exceptions.QuotaExceededError` raised at once, without retrying
        (it should say when the quota resets). ``None``: a short-term limit, retried with backoff.
    :param resets_at: when the exhausted quota resets (aware UTC datetime), if known.
    """

    detail: str
    final: str | None = None
    resets_at: Any = None


@dataclass(frozen=True)
class ApiSpec:
    """What differs between APIs, given to the shared transport.

    :param name: how messages name the API (``"Calltouch"``).
    :param error_parser: non-retryable error answers -> typed errors.
    :param read_429: ``(body, secrets) -> QuotaAnswer``: retry, or give up at once.
    :param rate_hint: the advice appended when 429s outlast every retry.
    """

    name: str
    error_parser: ErrorParser
    read_429: Callable[[str, Secrets], QuotaAnswer]
    rate_hint: str
