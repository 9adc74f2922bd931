"""The dashboard in a real browser: Debian's Chromium driven by Selenium through chromedriver.

The whole platform (embedded profile) runs; a fleet page is open while FD001 unit 1 is replayed to its
critical alert, which must arrive on the page without a reload; the alert is acknowledged from the
alerts page; the machine's page draws its RUL chart. What NiceGUI's simulated user cannot show is
checked here: the JavaScript (AG Grid, ECharts, Quasar) runs and the websocket pushes updates.

Screenshots go to `$VIGIL_SCREENSHOT_DIR` when set (`VIGIL_SCREENSHOT_DIR=docs/screenshots` refreshes
the README's), else to the test's temporary folder. Without chromium and chromedriver the test skips,
or fails under VIGIL_REQUIRE_SERVICES=1 (`.ci/run` installs them).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from localdapr.testing import wait_until
from tests.conftest import skip_or_fail
from tests.e2e.platform import Platform, running_platform, write_components
from tests.e2e.test_pipeline import fleet_batches, post
from vigil.cli import main

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
UNIT = 1  # FD001 unit 1: 192 cycles to failure, critical near its end
WAIT = 30.0  # seconds any one thing may take to show up on a page


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        skip_or_fail(f"no browser for the dashboard test: {', '.join(missing)} missing "
                     "(apt-get install chromium chromium-driver)")  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        # Nothing but the dashboard on the network: no update, sync or metrics calls home.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    # An explicit driver path keeps Selenium Manager from looking for (or downloading) a driver.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def webhook() -> Iterator[str]:
    """An operator's webhook that takes every notification, so the pages show them delivered."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet: deliveries are not the subject here
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/vigil/alerts"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def platform(tmp_path: Path, webhook: str) -> Iterator[Platform]:
    components = write_components(tmp_path / "components", "embedded")
    (components / "notifications.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: notifications\nspec:\n"
        "  type: bindings.http\n  version: v1\n  metadata:\n"
        f'    - name: url\n      value: "{webhook}"\n    - name: direction\n      value: output\n'
        "scopes: [alerting]\n"
    )
    # 120 rounds: with fewer the small model (learning rate 0.03) never predicts an engine critical.
    env = {"VIGIL_TRAINING_N_ESTIMATORS": "120", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
    with running_platform(components, tmp_path, env) as p:
        yield p


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("VIGIL_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver: WebDriver, what: str, condition: Callable[[WebDriver], Any]) -> Any:
    """`condition`'s first truthy answer within WAIT seconds; elements re-rendered meanwhile are retried."""
    return WebDriverWait(
        driver, WAIT, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]
    ).until(condition, message=f"{what} within {WAIT:.0f} s")


def cell_selector(row_id: str, column: str) -> str:
    return f'.ag-row[row-id="{row_id}"] .ag-cell[col-id="{column}"]'


def clicked_cell(driver: WebDriver, row_id: str, column: str) -> bool:
    """Clicks an AG Grid cell; False while its row is not rendered. For `wait_for`: a row re-rendered
    between finding the cell and clicking it (a live update of the row) raises a stale element, which
    `wait_for` retries, so the click lands on the row as it is now."""
    found = driver.find_elements(By.CSS_SELECTOR, cell_selector(row_id, column))
    if not found:
        return False
    found[0].click()
    return True


def cell(driver: WebDriver, row_id: str, column: str) -> str | None:
    """The text of an AG Grid cell, or None while its row is not rendered."""
    # The grid re-renders a row when its data changes: an element found a moment ago may be gone when its
    # text is read, so a read that lost that race is done again.
    for _ in range(10):
        found = driver.find_elements(By.CSS_SELECTOR, cell_selector(row_id, column))
        try:
            return found[0].text if found else None
        except StaleElementReferenceException:
            continue
    raise StaleElementReferenceException(f"row {row_id} column {column} re-rendered on every read")


def fleet_ids(platform: Platform) -> set[str]:
    fleet = httpx.get(f"{platform.url('alerting')}/v1/fleet", timeout=10).json()
    return {m["equipment_id"] for m in fleet["machines"]}


def notified(driver: WebDriver, text: str) -> bool:
    return any(text in n.text for n in driver.find_elements(By.CSS_SELECTOR, ".q-notification"))


def field(driver: WebDriver, label: str) -> WebElement:
    """The <input> of the Quasar field labelled `label`."""
    return driver.find_element(
        By.XPATH,
        f"//label[contains(@class, 'q-field')][.//div[contains(@class, 'q-field__label') and "
        f"normalize-space()='{label}']]//input",
    )


def test_an_alert_arrives_live_is_acknowledged_and_its_machine_charted(
    browser: WebDriver,  # first: without a browser the test skips before the platform starts
    platform: Platform,
    screenshots: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    machine = f"web-{uuid.uuid4().hex[:6]}-{UNIT:03d}"
    batches = list(fleet_batches(machine[: -len(f"{UNIT:03d}")], (UNIT,), cycles_per_batch=20))
    dashboard = platform.url("dashboard")
    resp = post(platform, batches[0])  # the machine exists, far from its failure
    assert resp.status_code == 200, resp.text
    # A page shows alerting's fleet as it opens, then what reaches it live. The machine's first health
    # report reaches the dashboard and alerting on their own subscriptions: a page opened after the
    # dashboard had it but before alerting stored it would show the machine only at its next report
    # (the silence check's re-announce, 30 s later), so the page opens once alerting has it.
    wait_until(
        lambda: machine in fleet_ids(platform), timeout=WAIT, interval=0.2, what=f"{machine} in /v1/fleet"
    )

    browser.get(f"{dashboard}/")
    wait_for(browser, f"{machine} in the fleet grid", lambda d: cell(d, machine, "status"))
    assert cell(browser, machine, "status") != "critical"
    for batch in batches[1:]:  # the rest of its life while the page stays open: no reload from here on
        resp = post(platform, batch)
        assert resp.status_code == 200, resp.text
    wait_for(
        browser, "the critical alert's notification", lambda d: notified(d, f"critical alert on {machine}")
    )
    wait_for(browser, f"{machine} critical in its row", lambda d: cell(d, machine, "status") == "critical")
    wait_for(browser, "its open alert counted", lambda d: int(cell(d, machine, "open_alerts") or 0) >= 1)
    browser.save_screenshot(str(screenshots / "fleet.png"))

    (alert,) = httpx.get(
        f"{platform.url('alerting')}/v1/alerts",
        params={"equipment_id": machine, "state": "open", "severity": "critical"},
        timeout=30,
    ).json()
    browser.get(f"{dashboard}/alerts")
    wait_for(browser, "the alert in the alerts grid", lambda d: cell(d, alert["id"], "state") == "open")
    wait_for(browser, "the alert's row clicked", lambda d: clicked_cell(d, alert["id"], "equipment_id"))
    wait_for(
        browser,
        "the alert selected",
        lambda d: d.find_element(By.XPATH, f"//*[starts-with(normalize-space(), '{alert['id']}: open')]"),
    )
    operator = field(browser, "operator")
    # clear() empties the DOM value behind Vue's back (the model keeps "operator"): select and retype.
    operator.send_keys(Keys.CONTROL, "a")
    operator.send_keys("browser-test")
    field(browser, "note").send_keys("checked on site")
    browser.find_element(By.XPATH, "//button[.//span[normalize-space()='Acknowledge']]").click()
    wait_for(
        browser, "the acknowledgement's notification", lambda d: notified(d, "acknowledged by browser-test")
    )
    wait_for(browser, "the row acknowledged", lambda d: cell(d, alert["id"], "state") == "acknowledged")
    browser.save_screenshot(str(screenshots / "alerts.png"))
    stored = httpx.get(f"{platform.url('alerting')}/v1/alerts/{alert['id']}", timeout=30).json()
    assert stored["state"] == "acknowledged" and stored["acknowledged_by"] == "browser-test"
    assert stored["history"][-1]["note"] == "checked on site"
    # The terminal's view of the same alert (`vigil alerts`), against the real alerting.
    assert main(["alerts", "--url", platform.url("alerting"), "--machine", machine]) == 0
    assert f"{alert['id']}  acknowledged" in capsys.readouterr().out

    browser.get(f"{dashboard}/machine/{machine}")
    canvas = wait_for(
        browser,
        "the RUL chart drawn",
        lambda d: next(
            (
                c
                for c in d.find_elements(By.CSS_SELECTOR, "[_echarts_instance_] canvas")
                if c.size["width"] > 0
            ),
            None,
        ),
    )
    # Drawn, not just placed: some of the canvas' pixels are painted.
    painted = browser.execute_script(
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) n++; } return n;",
        canvas,
    )
    assert painted > 1000, painted
    assert "Predicted remaining useful life" in browser.page_source
    browser.save_screenshot(str(screenshots / "machine.png"))
