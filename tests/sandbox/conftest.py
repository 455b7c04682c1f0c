"""Fixtures for the sandbox's own tests: a sandbox without rate limits and URL builders."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

CT_TOKEN = "sandbox-ct-token"
YM_TOKEN = "sandbox-ym-token"


@dataclass(frozen=True)
class Urls:
    """Builds the real API paths on the sandbox under test."""

    base: str

    def calls(self, site: int = 10001) -> str:
        """Calls diary of ``site``."""
        return f"{self.base}/calls-service/RestAPI/{site}/calls-diary/calls"

    @property
    def requests(self) -> str:
        """Requests (leads) journal."""
        return f"{self.base}/calls-service/RestAPI/requests"

    def plans(self, tail: str) -> str:
        """Plans import: ``add`` or ``<id>/status``."""
        return f"{self.base}/report-service/RestAPI/api/plans-import/{tail}"

    def metrika(self, tail: str, counter: int = 20001) -> str:
        """Metrika offline conversions: ``upload_calls``, ``calls_uploading/<id>``, ``calls_uploadings``."""
        return f"{self.base}/management/v1/counter/{counter}/offline_conversions/{tail}"


@pytest.fixture
def urls(sandbox) -> Urls:
    """URL builder for the session's sandbox."""
    return Urls(sandbox.url)


@pytest.fixture
def api(sandbox):
    """The sandbox reset with generous rate limits, so functional tests never meet a 429."""
    sandbox.reset(calltouch_rps=1000, metrika_rps=1000, metrika_parallel=100)
    return sandbox


@pytest.fixture
def ct_params() -> dict[str, str]:
    """Auth + one day of calls (dd/mm/yyyy)."""
    return {"clientApiId": CT_TOKEN, "dateFrom": "20/11/2024", "dateTo": "20/11/2024"}


@pytest.fixture
def oauth() -> dict[str, str]:
    """Metrika auth header."""
    return {"Authorization": f"OAuth {YM_TOKEN}"}


@pytest.fixture
def plans_headers() -> dict[str, str]:
    """Plans import auth headers."""
    return {"Access-Token": CT_TOKEN, "SiteId": "10001"}
