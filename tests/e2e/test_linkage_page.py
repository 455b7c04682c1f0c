"""The *Linkage report* page under the real stack: api-server + scheduler + triggerer on PostgreSQL.

Two days of the ``demo`` calls pipeline are backfilled; each run's ``report`` task writes the day's
row. Then:

* the page's own data endpoint (``/calltouch-metrika/api/linkage``, through the API server with the
  admin's token) returns those two days with exactly the counts the sandbox recorded for the uploads
  and the upload tasks reported;
* headless Chromium, logged in, opens the page from the Airflow navigation (``/plugin/linkage-report``:
  the page inside the UI) and directly, checks the chart is drawn and the table shows the endpoint's
  numbers, switches to 90 days, and saves ``test-artifacts/linkage-report.png`` (and
  ``linkage-report-in-ui.png``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from .conftest import CALLS_DAG, E2E, PIPELINE, SECRETS, backfill_days
from .test_pipelines import _backfill, _run_day, _wait_backfill_completed
from .test_ui import _log_in, _screenshot, browser  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.browser

PAGE = "/calltouch-metrika/linkage"
DATA = "/calltouch-metrika/api/linkage"


@pytest.fixture(scope="module")
def reported_days(e2e: E2E) -> dict[str, Any]:
    """Backfill two days (not those other e2e tests use) and wait until their runs succeeded."""
    days = backfill_days(2, end_days_ago=10)
    earlier_runs = set(e2e.runs(CALLS_DAG))
    e2e.hold_metrika_statuses()
    try:
        _backfill(e2e, days)
        _wait_sensors_started(e2e, earlier_runs, 2)
        time.sleep(5)  # apache/airflow#71580: let the deferrals settle before the triggers can fire
    finally:
        e2e.release_metrika_statuses()
    _wait_backfill_completed(e2e)
    runs = {k: r for k, r in e2e.runs(CALLS_DAG).items() if k not in earlier_runs}
    return {"days": days, "runs": runs}


def _wait_sensors_started(e2e: E2E, earlier_runs: set[str], count: int, *, timeout: float = 420) -> None:
    """Wait until ``count`` new runs' ``wait`` sensors are waiting (deferred, or poking on a worker)."""
    deadline = time.monotonic() + timeout
    states: dict[str, Any] = {}
    while time.monotonic() < deadline:
        runs = [k for k in e2e.runs(CALLS_DAG) if k not in earlier_runs]
        states = {k: e2e.task_instances(CALLS_DAG, k).get("wait", {}).get("state") for k in runs}
        if len(states) == count and set(states.values()) <= {"deferred", "running", "up_for_reschedule"}:
            return
        time.sleep(3)
    pytest.fail(f"the status sensors did not start waiting within {timeout:.0f}s: {states}")


def _data(e2e: E2E, days: int) -> dict[str, Any]:
    r = requests.get(
        f"{e2e.stack.api_url}{DATA}",
        params={"pipeline": PIPELINE, "days": days},
        headers={"Authorization": f"Bearer {e2e.token}"},
        timeout=60,
    )
    r.raise_for_status()
    return r.json()


def test_data_endpoint_matches_the_sandbox_uploads(e2e: E2E, reported_days: dict[str, Any]) -> None:
    assert (
        requests.get(f"{e2e.stack.api_url}{DATA}", params={"pipeline": PIPELINE}, timeout=30).status_code
        == 401
    )
    body = _data(e2e, 30)
    rows = {r["day"]: r for r in body["rows"]}
    uploads = {u["id"]: u for u in e2e.uploads()}
    for run_id, run in reported_days["runs"].items():
        states = {t: ti["state"] for t, ti in e2e.task_instances(CALLS_DAG, run_id).items()}
        assert states["report"] == "success", states
        day = _run_day(run).isoformat()
        row, upload = rows[day], e2e.xcom(CALLS_DAG, run_id, "upload")
        stored = uploads[upload["upload_id"]]
        assert row["upload_ids"] == [stored["id"]] and day in stored["comment"]
        assert (row["extracted"], row["uploaded"], row["rejected"]) == (
            upload["extracted"],
            upload["uploaded"],
            upload["rejected"],
        )
        assert row["rejected_by_reason"] == {k: v for k, v in upload["rejects_by_reason"].items() if v}
        assert row["status"] == stored["status"] == "PROCESSED"
        for q in ("source_quantity", "line_quantity", "linked_quantity", "static_calls_quantity"):
            assert row[q] == stored[q], q
        assert row["dynamic_calls_quantity"] == stored["dynamic_calls_quantity"]
        assert row["linked_share"] == pytest.approx(stored["linked_quantity"] / stored["line_quantity"])
        assert {"dag_id": CALLS_DAG, "run_id": run_id} in row["runs"]
    text = str(body)
    assert not any(s in text for s in SECRETS)


def test_page_in_chromium_shows_the_endpoints_numbers(
    e2e: E2E,
    reported_days: dict[str, Any],
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    body = _data(e2e, 30)
    _log_in(browser, e2e)
    wait = WebDriverWait(browser, 60)

    # From the Airflow navigation: the page inside the UI (an iframe of the plugin's page).
    browser.get(f"{e2e.stack.api_url}/plugin/linkage-report")
    frame = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe") or None)[0]
    assert PAGE.lstrip("/") in (frame.get_attribute("src") or "")
    browser.switch_to.frame(frame)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == f"{PIPELINE}:30")
    browser.switch_to.default_content()
    time.sleep(1)
    _screenshot(browser, "linkage-report-in-ui.png")

    # The page itself.
    browser.set_window_size(1400, 1250)
    browser.get(f"{e2e.stack.api_url}{PAGE}?pipeline={PIPELINE}&days=30")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == f"{PIPELINE}:30")
    assert browser.find_element(By.ID, "message").text == ""
    # plotly drew the bars and the share line
    assert browser.find_elements(By.CSS_SELECTOR, "#chart .barlayer .trace")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart .scatterlayer .trace")
    legend = browser.find_element(By.CSS_SELECTOR, "#chart .legend").text
    assert "uploaded, linked" in legend and "linked share" in legend
    table = {
        tr.get_attribute("data-day"): [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#days-table tbody tr")
    }
    for row in body["rows"]:
        cells = table[row["day"]]
        assert cells[1:4] == [str(row["extracted"]), str(row["uploaded"]), str(row["rejected"])]
        assert cells[5] == row["status"]
        assert cells[6:9] == [
            str(row["source_quantity"]),
            str(row["line_quantity"]),
            str(row["linked_quantity"]),
        ]
        links = [
            a.get_attribute("href")
            for a in browser.find_elements(By.CSS_SELECTOR, f"tr[data-day='{row['day']}'] a")
        ]
        assert links and all(f"/dags/{CALLS_DAG}/runs/" in h for h in links)
    page_text = browser.page_source
    assert not any(s in page_text for s in SECRETS)
    shot = _screenshot(browser, "linkage-report.png")
    assert shot.stat().st_size > 20_000

    # 90 days: the selector reloads the data through the same endpoint
    Select(browser.find_element(By.ID, "days")).select_by_value("90")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == f"{PIPELINE}:90")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#days-table tbody tr[data-day]")) == len(
        _data(e2e, 90)["rows"]
    )

    # A run link opens the run in the Airflow UI
    first_link = browser.find_element(By.CSS_SELECTOR, "#days-table tbody a")
    run_id = first_link.text
    first_link.click()
    WebDriverWait(browser, 60).until(lambda d: "/runs/" in d.current_url)
    assert run_id in requests.utils.unquote(browser.current_url)
