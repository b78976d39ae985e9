"""The console's Workers and Dashboard pages in a real browser against a real API and worker: a
manager sees the worker's heartbeat, pauses and resumes it and reads its acknowledgements; the
dashboard shows its tiles and charts and reads the summary again; a viewer gets the dashboard
but neither the workers nor any control."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.integration.api_server import login
from tests.integration.console_harness import (
    PHONE,
    ConsoleStack,
    clean,
    open_console,
    screenshot,
    stack,
)
from tests.integration.workers import scene_jpeg

WORKER_TIMEOUT_MS = 60_000  # a worker's first heartbeat comes once it has started (~15 s)
COMMAND_TIMEOUT_MS = 15_000  # an ack within 5 s, then the next 2 s refresh shows the new state


@pytest.fixture(scope="module")
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleStack]:
    yield from stack(request, tmp_path_factory, with_worker=True)


def _running_worker(page: Page) -> str:
    """The one worker's id, once its row says it runs (commands before that race its start)."""
    row = page.locator("tr[data-worker]")
    expect(row).to_have_count(1, timeout=WORKER_TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("running", timeout=WORKER_TIMEOUT_MS)
    worker_id = row.get_attribute("data-worker")
    assert worker_id
    return worker_id


def test_manager_pauses_and_resumes_a_worker(console: ConsoleStack, browser: Browser) -> None:
    page = open_console(browser, console, "manager")
    page.get_by_role("link", name="Workers").click()
    expect(page.locator("#page-title")).to_have_text("Workers")
    worker_id = _running_worker(page)
    row = page.locator(f'tr[data-worker="{worker_id}"]')
    expect(row).to_contain_text("max batch 8")  # the heartbeat's live settings
    acks = page.get_by_test_id("acks")

    page.get_by_role("button", name=f"Pause {worker_id}").click()
    expect(acks).to_contain_text(f"{worker_id}: pause applied", timeout=COMMAND_TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("paused", timeout=COMMAND_TIMEOUT_MS)

    page.get_by_role("button", name=f"Resume {worker_id}").click()
    expect(acks).to_contain_text(f"{worker_id}: resume applied", timeout=COMMAND_TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("running", timeout=COMMAND_TIMEOUT_MS)

    # A live setting: typed into the row (kept across refreshes), acknowledged, then reported.
    row.get_by_text("Settings and model").click()
    page.get_by_label(f"Max batch for {worker_id}").fill("4")
    page.get_by_role("button", name=f"Apply settings to {worker_id}").click()
    expect(acks).to_contain_text(f"{worker_id}: set applied", timeout=COMMAND_TIMEOUT_MS)
    expect(row).to_contain_text("max batch 4", timeout=COMMAND_TIMEOUT_MS)

    # A model the store does not hold: the worker refuses and the console says why.
    page.get_by_label(f"Model for {worker_id}").fill("mugdet-nowhere:9.9.9")
    page.get_by_role("button", name=f"Switch model of {worker_id}").click()
    expect(acks).to_contain_text(f"{worker_id}: switch_model refused", timeout=COMMAND_TIMEOUT_MS)
    # A name without a version is caught before it is sent, next to the control.
    page.get_by_label(f"Model for {worker_id}").fill("mugdet")
    page.get_by_role("button", name=f"Switch model of {worker_id}").click()
    expect(row.get_by_role("alert")).to_have_text("Name the model as name:version.")

    # Drain asks first; cancelling sends nothing and leaves the worker running.
    page.get_by_role("button", name=f"Drain {worker_id}").click()
    expect(page.get_by_role("button", name=f"Confirm drain {worker_id}")).to_be_focused()
    page.keyboard.press("Tab")  # to Cancel, from the keyboard
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name=f"Confirm drain {worker_id}")).to_be_hidden()
    expect(page.get_by_role("button", name=f"Drain {worker_id}")).to_be_focused()
    expect(row.locator(".badge")).to_have_text("running")
    screenshot(page, console, "workers-manager-desktop")
    clean(page)


def test_dashboard_shows_tiles_and_refreshes(console: ConsoleStack, browser: Browser) -> None:
    # One analysed scene, so the summary has latencies per stage and a result to count.
    reply = httpx.post(
        f"{console.api.url}/api/v1/analyze",
        params={"wait": 30_000},
        files={"image": ("scene.jpg", scene_jpeg(21), "image/jpeg")},
        headers=login(console.api, "admin"),
        timeout=40,
    )
    assert reply.status_code == 200, reply.text  # 202 would mean no result within the wait
    page = open_console(browser, console, "manager")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#page-title")).to_have_text("Dashboard")
    tiles = page.get_by_test_id("tiles")
    for label in ("Throughput", "Latency p50", "Consumer lag", "Dead letters", "Workers"):
        expect(tiles).to_contain_text(label)
    expect(tiles).to_contain_text(re.compile(r"Workers\s*1/1"), timeout=WORKER_TIMEOUT_MS)
    expect(tiles).to_contain_text("1 result in the window")
    latency = page.get_by_role("region", name="Latency per stage")
    for stage in ("total", "preprocess", "inference", "analysis"):
        expect(latency.get_by_role("cell", name=stage, exact=True)).to_be_visible()
    expect(page.get_by_role("region", name="Results by status and model")).to_contain_text("ok")
    throughput = page.get_by_role("img", name=re.compile("throughput since this page opened"))
    expect(throughput).to_have_attribute("aria-label", re.compile(r"\d+ samples"))
    updated = page.get_by_test_id("updated-at")
    expect(updated).to_contain_text("Updated at")
    first = updated.inner_text()
    seen = int(re.search(r"(\d+) samples", throughput.get_attribute("aria-label") or "")[1])
    # The next read (5 s on) adds a sample to the history and a new time to the header.
    later = re.compile(rf"\b{seen + 1} samples")
    expect(throughput).to_have_attribute("aria-label", later, timeout=12_000)
    expect(updated).not_to_have_text(first)
    screenshot(page, console, "dashboard-manager-desktop")
    clean(page)


def test_viewer_gets_the_dashboard_without_workers(console: ConsoleStack, browser: Browser) -> None:
    page = open_console(browser, console, "viewer", viewport=PHONE)
    nav = page.locator("#nav")
    expect(nav.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(nav.get_by_role("link", name="Workers")).to_have_count(0)
    page.goto(console.url + "#/workers")
    expect(page.locator("main")).to_contain_text("Your role cannot open Workers.")
    expect(page.locator("tr[data-worker]")).to_have_count(0)

    page.goto(console.url + "#/dashboard")
    expect(page.get_by_test_id("tiles")).to_contain_text("Throughput")
    expect(page.get_by_test_id("updated-at")).to_contain_text("Updated at")
    expect(page.locator("main button")).to_have_count(0)  # nothing to steer from here
    screenshot(page, console, "dashboard-viewer-phone")
    clean(page)


def test_workers_page_at_a_phone_width(console: ConsoleStack, browser: Browser) -> None:
    page = open_console(browser, console, "manager", viewport=PHONE)
    page.goto(console.url + "#/workers")
    worker_id = _running_worker(page)
    expect(page.get_by_role("button", name=f"Pause {worker_id}")).to_be_attached()
    screenshot(page, console, "workers-manager-phone")
    clean(page)
