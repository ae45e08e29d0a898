"""End to end: the real Streamlit server (`streamlit run`) against the test database, driven
by headless Debian Chromium through Playwright; screenshots land in test-artifacts/ (and, with
PULSE_UPDATE_SCREENSHOTS=1, in docs/screenshots/<page>.png for the README tour)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (run scripts/browser.sh)", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

from app.cli import streamlit_command  # noqa: E402
from tests.app.app_fixtures import seed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOC_SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # never `playwright install`: drive the distribution's chromium
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM),
            "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(pg_url, tmp_path):
    lake = tmp_path / "lake"
    seed(pg_url, lake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_") or k.startswith("PULSE_TEST_")}
    env.update(PULSE_DATABASE_URL=pg_url, PULSE_HOME=str(tmp_path / "home"), PULSE_LAKE_DIR=str(lake))
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(streamlit_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("streamlit did not become healthy within 60 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _no_exception(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)


def _settled(page: Page) -> None:
    """Streamlit's running indicator is gone: the script run that drew the page has finished."""
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)


def _click_until(page: Page, button: str, shows, tries: int = 3) -> None:
    """Click an idempotent button until ``shows`` is visible (a click that lands while the
    frontend is still wiring the widget up is lost on a loaded machine)."""
    for attempt in range(tries):
        _settled(page)
        page.get_by_role("button", name=button, exact=True).click()
        try:
            expect(shows).to_be_visible(timeout=20_000)
            return
        except AssertionError:
            if attempt == tries - 1:
                raise


def _shot(page: Page, name: str) -> None:
    _settled(page)
    _no_exception(page)
    page.screenshot(path=ARTIFACTS / f"app-{name}.png", full_page=True)
    if os.environ.get("PULSE_UPDATE_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=DOC_SHOTS / f"{name}.png", full_page=True)


def test_every_page_in_chromium(app_url, page: Page):
    expect.set_options(timeout=45_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 2000})  # Streamlit scrolls inside: a tall window shows all

    page.goto(app_url + "/")
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    expect(page.get_by_text("Devices online")).to_be_visible()
    expect(page.get_by_text("8 device(s)")).to_be_visible()
    expect(page.get_by_test_id("stDeckGlJsonChart")).to_be_visible()
    expect(page.get_by_test_id("stDownloadButton")).to_be_visible()
    expect(page.get_by_text("Metric ranges (last value between min and max)")).to_be_visible()
    _shot(page, "fleet")

    page.goto(app_url + "/device")
    expect(page.get_by_role("heading", name="Device explorer")).to_be_visible()
    expect(page.get_by_text("points sent")).to_be_visible()
    expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible()
    # the seeded anomaly scores, silence and reporting gap of the default device
    expect(page.get_by_text("1 silence span(s) marked", exact=False)).to_be_visible()
    expect(page.get_by_text("anomaly scores (", exact=False)).to_be_visible()
    expect(page.get_by_role("heading", name="Health")).to_be_visible()
    expect(page.get_by_text("Offline intervals")).to_be_visible()
    _shot(page, "device")

    page.goto(app_url + "/health")
    expect(page.get_by_role("heading", name="Data health")).to_be_visible()
    expect(page.get_by_text("Checks failing")).to_be_visible()
    expect(page.get_by_text("unknown_device — 1")).to_be_visible()
    expect(page.get_by_text("Delivery failure rate")).to_be_visible()
    _shot(page, "health")

    page.goto(app_url + "/alerts")
    expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    expect(page.get_by_text("2 alert(s)")).to_be_visible()
    expect(page.get_by_role("heading", name="Event timeline")).to_be_visible()
    expect(page.get_by_role("heading", name="Active silences")).to_be_visible()
    expect(page.get_by_text("Notifications", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Delivery log")).to_be_visible()
    expect(page.get_by_role("button", name="Re-drive")).to_be_visible()
    _settled(page)
    # acknowledge the selected alert as a named operator: the timeline shows the ack
    page.get_by_label("Your name").fill("olga")
    page.get_by_label("Your name").press("Enter")
    # (a retried click that finds the ack already done by olga proves the first one landed)
    _click_until(page, "Acknowledge", page.get_by_text("ack recorded for").or_(
        page.get_by_text("already acknowledged by olga")))
    expect(page.get_by_test_id("stDataFrame").nth(1)).to_be_visible()
    _shot(page, "alerts")

    page.goto(app_url + "/sla")
    expect(page.get_by_role("heading", name="SLA reports")).to_be_visible()
    expect(page.get_by_role("heading", name="Report runs")).to_be_visible()
    _click_until(page, "Build report", page.get_by_text("Availability by site"))
    expect(page.get_by_text("Devices below target")).to_be_visible()
    expect(page.get_by_role("button", name="Download HTML")).to_be_visible()
    _shot(page, "sla")

    page.goto(app_url + "/lab")
    expect(page.get_by_role("heading", name="Detector lab")).to_be_visible()
    from pulse.settings import get_settings

    if get_settings().nab_dir is None:  # a checkout without ../shared: the lab says how to get NAB
        expect(page.get_by_text("The NAB corpus was not found")).to_be_visible()
    else:
        _click_until(page, "Run detector", page.get_by_text("NAB score of this file"))
        expect(page.get_by_text("Flagged points", exact=True)).to_be_visible()
        expect(page.get_by_role("heading", name="Save as a fleet anomaly rule")).to_be_visible()
    _shot(page, "lab")

    page.goto(app_url + "/rules")
    expect(page.get_by_role("heading", name="Rule lab")).to_be_visible()
    _click_until(page, "Backtest", page.get_by_role("heading", name="Backtest of new-rule"))
    expect(page.get_by_text("Alerts fired")).to_be_visible()
    expect(page.get_by_text("Pages per day")).to_be_visible()
    expect(page.get_by_role("button", name="Save rule", exact=True)).to_be_visible()
    _shot(page, "rules")
