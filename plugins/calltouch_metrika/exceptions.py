"""Typed errors of calltouch-metrika.

Every error a user can meet carries a message that says what went wrong and what to do,
names the site or counter involved, and never contains a token or a full request URL.
They all derive from :class:`AirflowException`, so Airflow's retry logic sees them as
ordinary task failures; the ones that retrying cannot fix are also
:class:`AirflowFailException` subclasses, so a task fails at once instead of retrying.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class CalltouchMetrikaError(AirflowException):
    """Base class of every error raised by this package.

    :param status_code: the HTTP status of the API answer the error stems from (``None`` when there was
        no answer, or the error is not about one). Triggers read it to tell permanent failures (4xx) from
        transient ones.
    """

    def __init__(self, *args: object, status_code: int | None = None) -> None:
        super().__init__(*args)
        self.status_code: int | None = status_code


class AuthenticationError(CalltouchMetrikaError, AirflowFailException):
    """The API rejected the token (HTTP 401/403), or the token may not access this site or counter.

    Retrying does not help: fix the connection's token or the site/counter id.
    """


class ValidationError(CalltouchMetrikaError, AirflowFailException):
    """The API refused the request's content.

    :param violations: ``(field_path, message)`` pairs, e.g. Calltouch's
        ``items[3].metric.name`` violations or Metrika's ``errors[]`` (location, message).
    """

    def __init__(
        self, message: str, violations: Sequence[tuple[str, str]] = (), *, status_code: int | None = None
    ) -> None:
        self.violations: list[tuple[str, str]] = [(str(f), str(m)) for f, m in violations]
        lines = [message] + [f"{field}: {msg}" if field else msg for field, msg in self.violations]
        super().__init__("\n".join(lines), status_code=status_code)


class NotFoundError(CalltouchMetrikaError, AirflowFailException):
    """The API answered 404: the upload, import, site or counter does not exist (or the host is wrong).

    Retrying does not help: check the id and the connection's host.
    """


class QuotaExceededError(CalltouchMetrikaError):
    """A rate limit or quota (HTTP 429) stayed exhausted after retries, or a daily quota is exhausted.

    A daily quota (Calltouch's API points, Metrika's ``quota_requests_by_uid``) is not retried within the
    task: the message says when it resets, and :attr:`resets_at` holds that time (aware UTC) when known.
    """

    def __init__(
        self, *args: object, status_code: int | None = None, resets_at: datetime | None = None
    ) -> None:
        super().__init__(*args, status_code=status_code)
        self.resets_at = resets_at


class ServerError(CalltouchMetrikaError):
    """The API kept answering 5xx or dropping the connection after every retry."""


class MalformedResponseError(CalltouchMetrikaError):
    """The API answered 2xx with a body that is not the JSON we expect (non-JSON, truncated, wrong shape)."""


class OutcomeUnknownError(CalltouchMetrikaError):
    """A non-idempotent request (an upload, a plans import) was sent, but no answer came back.

    The server may or may not have acted on it. The request is deliberately not re-sent:
    the caller must look the result up (e.g. list uploads by comment) before trying again.
    """


class UploadFailedError(CalltouchMetrikaError, AirflowFailException):
    """Metrika finished processing an upload in a state the pipeline is configured to treat as failure."""


class PlanFileError(CalltouchMetrikaError, AirflowFailException):
    """A plan file is invalid. The message lists every problem as ``file:row: field: message``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in plan file(s):\n" + "\n".join(self.problems))


class ConfigError(CalltouchMetrikaError):
    """The pipelines configuration file is invalid; the message names the pipeline and the key."""
