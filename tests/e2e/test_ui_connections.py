"""The connections list's **Test** button in a real headless Chromium, for both default connections.

The stack creates ``calltouch_default`` / ``metrika_default`` in the metadata DB (as ``make up`` does)
with ``AIRFLOW__CORE__TEST_CONNECTION=Enabled``; the UI's list posts ``port: 0`` for them, which the
api-server accepts because they are stored with port 0 (README, "Pointing at real accounts"). Each test
must come back green ("Test Connection Successful", the Metrika one naming the token's counters). The
page is saved as ``test-artifacts/ui-connections-test.png``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import E2E
from .test_ui import _log_in, _screenshot, browser  # noqa: F401 (the browser fixture)

pytestmark = pytest.mark.browser

CONNECTIONS = ("calltouch_default", "metrika_default")


def test_the_test_button_is_green_for_both_default_connections(e2e: E2E, browser: Any) -> None:  # noqa: F811
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _log_in(browser, e2e)
    browser.get(f"{e2e.stack.api_url}/connections")
    # the list and its toasts re-render while read: a stale element is read again, not a failure
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))

    def row(conn_id: str) -> Any:
        for tr in browser.find_elements(By.CSS_SELECTOR, "tr"):
            cells = tr.find_elements(By.CSS_SELECTOR, "td")
            if any(c.text.strip() == conn_id for c in cells):
                return tr
        return None

    def toasts(title: str) -> list[str]:
        found = []
        for el in browser.find_elements(By.CSS_SELECTOR, "[data-scope=toast][data-part=root]"):
            if title in el.text:
                found.append(el.text)
        return found

    expected = {
        "calltouch_default": "Calltouch site 10001: token accepted",
        "metrika_default": "Metrika: token accepted; counters: 20001",
    }
    try:
        for conn_id in CONNECTIONS:
            wait.until(lambda d, c=conn_id: row(c) is not None)
        for conn_id in CONNECTIONS:
            for attempt in range(5):  # the row may re-render between finding and clicking
                try:
                    button = row(conn_id).find_element(
                        By.CSS_SELECTOR, "button[aria-label='Test Connection']"
                    )
                    assert button.is_enabled(), f"the Test button of {conn_id} is disabled"
                    button.click()
                    break
                except StaleElementReferenceException:
                    if attempt == 4:
                        raise
                    time.sleep(0.5)
            wait.until(
                lambda d, c=conn_id: (
                    any(expected[c] in t for t in toasts("Test Connection Successful"))
                    or toasts("Test Connection Failed")
                )
            )
            assert not toasts("Test Connection Failed"), toasts("Test Connection Failed")
    finally:
        _screenshot(browser, "ui-connections-test.png")
