"""The Airflow UI in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

A new user's path: log in, open a calls DAG, start a backfill of two days from *Trigger -> Backfill*,
and watch both runs succeed in the DAG's Runs list. The final page is saved as
``test-artifacts/ui-backfill.png``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, CALLS_DAG, E2E, backfill_days

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: The flags that keep Chromium quiet on a machine without outside network, in a fresh profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)

pytestmark = pytest.mark.browser


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium session with a fresh profile; quit (and profile removed) afterwards."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (as root, `bash tools/system-deps.sh` installs Debian's "
            "chromium and chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ctm-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def _log_in(driver: Any, e2e: E2E) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(e2e.stack.api_url)
    wait = WebDriverWait(driver, 60)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(e2e.stack.admin_password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/auth/login" not in d.current_url)


def _set_datetime(driver: Any, index: int, day: date, hh_mm: str) -> None:
    """Fill the backfill dialog's ``index``-th date-time picker (0 = From, 1 = To)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_elements(By.CSS_SELECTOR, "[data-testid=datetime-input]")[index].click()

    def visible(selector: str) -> Any:
        found = []
        for element in driver.find_elements(By.CSS_SELECTOR, selector):
            try:
                if element.is_displayed():
                    found.append(element)
            except StaleElementReferenceException:  # the picker closed between find and check
                continue
        return found[0] if found else None

    date_input = WebDriverWait(driver, 20).until(lambda d: visible("input[placeholder='YYYY/MM/DD']"))
    date_input.send_keys(day.strftime("%Y/%m/%d"))
    time_input = visible("input[placeholder='HH:mm']")
    time_input.send_keys(hh_mm)
    time_input.send_keys(Keys.ESCAPE)
    WebDriverWait(driver, 20).until(lambda d: visible("input[placeholder='YYYY/MM/DD']") is None)


def test_backfill_two_days_from_the_ui(e2e: E2E, browser: Any) -> None:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    days = backfill_days(2, end_days_ago=6)  # not the days the CLI backfill test uses
    runs_before = set(e2e.runs(CALLS_DAG))
    _log_in(browser, e2e)

    browser.get(f"{e2e.stack.api_url}/dags/{CALLS_DAG}")
    wait = WebDriverWait(browser, 60)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-button]"))).click()
    wait.until(ec.element_to_be_clickable((By.XPATH, "//*[normalize-space(text())='Backfill']"))).click()
    _set_datetime(browser, 0, days[0], "00:00")
    # The form's To keeps its default time 23:59 (UI timezone UTC); 23:59 UTC of days[0] is already
    # days[1] in Moscow, so the range From days[0] 00:00 -> To days[0] 23:59 UTC names the two days.
    _set_datetime(browser, 1, days[0], "23:59")
    try:
        wait.until(
            ec.visibility_of_element_located((By.XPATH, "//*[contains(text(), '2 runs will be triggered')]"))
        )
    except TimeoutException:
        _screenshot(browser, "ui-backfill-dialog-failed.png")
        raise
    max_active = browser.find_element(By.CSS_SELECTOR, "input[name=max_active_runs]")
    max_active.send_keys(Keys.CONTROL, "a")
    max_active.send_keys("2")
    _screenshot(browser, "ui-backfill-dialog.png")
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Run Backfill").click()

    # Watch the DAG's Runs list until the two new backfill runs show Success.
    browser.get(f"{e2e.stack.api_url}/dags/{CALLS_DAG}/runs")
    deadline = time.monotonic() + 420
    rows: list[str] = []
    while True:
        try:
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=table-list] tbody tr")))
            rows = [
                r.text
                for r in browser.find_elements(By.CSS_SELECTOR, "[data-testid=table-list] tbody tr")
                if r.text.split("\n", 1)[0] not in runs_before
            ]
        except (StaleElementReferenceException, TimeoutException):  # re-rendered while reading
            rows = []
        if any("Failed" in r for r in rows):
            _screenshot(browser, "ui-backfill.png")
            pytest.fail(
                f"a backfill run failed: {rows}\n{e2e.describe_failures(CALLS_DAG, list(e2e.runs(CALLS_DAG)))}"
            )
        if len(rows) == 2 and all("Success" in r and "Backfill" in r for r in rows):
            break
        if time.monotonic() > deadline:
            _screenshot(browser, "ui-backfill.png")
            pytest.fail(f"the UI did not show two successful backfill runs: {rows}")
        time.sleep(5)
        browser.refresh()
    shot = _screenshot(browser, "ui-backfill.png")
    assert shot.stat().st_size > 0

    # The runs the UI shows are the two days asked for (each run covers the local day it starts).
    new_runs = {k: r for k, r in e2e.runs(CALLS_DAG).items() if k not in runs_before}
    assert len(new_runs) == 2 and {r["run_type"] for r in new_runs.values()} == {"backfill"}
    covered = sorted(e2e.xcom(CALLS_DAG, run_id, "extract")["date_from"] for run_id in new_runs)
    assert covered == [d.isoformat() for d in days]
