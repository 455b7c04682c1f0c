"""Secret masking shared by every hook: register tokens with Airflow's masker, scrub them from our messages.

A token can reach text in several forms, and each one is registered with Airflow's secrets masker
(``airflow.sdk.log.mask_secret``) and removed by :meth:`Secrets.scrub`:

* raw, percent-encoded and form-encoded (a token may travel in the query string);
* JSON-escaped (a token inside a JSON document: ``\\n`` for a newline, ``\\"`` for a quote,
  ``\\u0430`` for non-ASCII when ``ensure_ascii``);
* ``repr()``-escaped (what an exception message such as ``requests``' ``InvalidHeader: ... 'OAuth <token>'``
  shows: ``\\n``, ``\\t``, ``\\\\``, ``\\x07``).

A hook whose API takes its token as a query parameter registers that parameter's name
(:func:`add_secret_query_param`): ``name=<value>`` is then scrubbed from our messages, and from urllib3's
DEBUG request lines by the filter :func:`install_log_filters` installs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from urllib.parse import quote, quote_plus

#: How much of a response body (after scrubbing secrets) an error message may quote.
BODY_SNIPPET = 300

_QUERY_PARAMS: set[str] = set()
_QUERY_TOKEN_RE: re.Pattern[str] | None = None
_PARAMS_LOCK = threading.Lock()


def add_secret_query_param(name: str) -> None:
    """Treat the query parameter ``name`` as a secret: ``name=<value>`` is scrubbed from every text.

    Called by a hook module whose API takes its token in the query string (Calltouch's ``clientApiId``).
    """
    global _QUERY_TOKEN_RE
    with _PARAMS_LOCK:
        _QUERY_PARAMS.add(name)
        names = "|".join(re.escape(n) for n in sorted(_QUERY_PARAMS))
        _QUERY_TOKEN_RE = re.compile(rf"((?:{names})=)[^&\s\"' ]*", re.IGNORECASE)


def scrub_query_params(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced by ``***``."""
    pattern = _QUERY_TOKEN_RE
    return pattern.sub(r"\1***", text) if pattern is not None else text


class _QueryTokenFilter(logging.Filter):
    """Scrub secret query parameters from log records of urllib3 (it logs request paths at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _QUERY_TOKEN_RE is None:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        scrubbed = scrub_query_params(message)
        if scrubbed != message:
            record.msg = scrubbed
            record.args = None
        return True


_FILTER_INSTALLED = False
_FILTER_LOCK = threading.Lock()


def install_log_filters() -> None:
    """Install the query-token scrubber on urllib3's loggers once per process."""
    global _FILTER_INSTALLED
    with _FILTER_LOCK:
        if _FILTER_INSTALLED:
            return
        for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
            logging.getLogger(name).addFilter(_QueryTokenFilter())
        _FILTER_INSTALLED = True


def token_variants(token: str) -> list[str]:
    """Every form a token can take in a text: raw, percent-/form-encoded, JSON-escaped, ``repr()``-escaped.

    Longest first, so that scrubbing a longer form never leaves a part of it behind.
    """
    variants = {
        token,
        quote(token, safe=""),
        quote(token),
        quote_plus(token),
        json.dumps(token)[1:-1],
        json.dumps(token, ensure_ascii=False)[1:-1],
        repr(token)[1:-1],
        token.encode("unicode_escape").decode("ascii"),
    }
    return sorted((v for v in variants if v), key=len, reverse=True)


def mask_token(token: str) -> None:
    """Register every form of ``token`` with Airflow's secrets masker."""
    from airflow.sdk.log import mask_secret

    for variant in token_variants(token):
        mask_secret(variant)


async def amask_token(token: str) -> None:
    """:func:`mask_token` for async code (triggers): ``amask_secret`` cannot deadlock the supervisor comms."""
    from airflow.sdk.log import amask_secret

    for variant in token_variants(token):
        await amask_secret(variant)


class Secrets:
    """Tokens of one hook; :meth:`scrub` removes them (in every form of :func:`token_variants`) from a text.

    :param register: also register them with Airflow's masker (sync hooks); async hooks pass ``False``
        and await :func:`amask_token` instead.
    """

    def __init__(self, *tokens: str | None, register: bool = True) -> None:
        self._variants: list[str] = []
        for token in tokens:
            if token:
                if register:
                    mask_token(token)
                self._variants.extend(token_variants(token))
        self._variants.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for variant in self._variants:
            text = text.replace(variant, "***")
        return scrub_query_params(text)


def snippet(text: str, secrets: Secrets, limit: int = BODY_SNIPPET) -> str:
    """A short, secret-free, single-line excerpt of a response body for an error message."""
    text = secrets.scrub(" ".join(secrets.scrub(text).split()))
    return text if len(text) <= limit else text[:limit] + "..."
