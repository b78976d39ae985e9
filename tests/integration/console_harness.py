"""A real API and worker for the web console, and Debian's Chromium driven by Playwright.

Playwright cannot download its own browsers here, so it drives the system's `chromium` (installed
by `make system-deps`) through `executable_path`. One stack per test module: signing in, the live
feed and the worker commands all run against it, as an operator would meet them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from core.config import Settings
from infra.provision import provision
from tests.conftest import settings_for
from tests.integration.api_server import PASSWORD, ApiServer, add_role_users, api_settings
from tests.integration.workers import WorkerProcess

T = TypeVar("T")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIEWPORT = {"width": 1280, "height": 800}
# Each document records what its content security policy refused (a refusal is no script error).
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""
PHONE = {"width": 390, "height": 844}


def in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on an event loop of its own thread: Playwright's sync API keeps
    a loop running in the test's thread while a browser is open, where `asyncio.run` refuses."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class ConsoleStack:
    settings: Settings
    api: ApiServer
    worker: WorkerProcess | None
    screenshots: Path
    contexts: list[BrowserContext] = field(default_factory=list)  # closed with the stack

    @property
    def url(self) -> str:
        return f"{self.api.url}/console/"


def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, *, with_worker: bool
) -> Iterator[ConsoleStack]:
    """A provisioned deployment of its own, the API, and (optionally) one worker."""
    services = [
        request.getfixturevalue(n)
        for n in ("kafka_broker", "mongo_server", "redis_server", "s3_server")
    ]
    settings = api_settings(settings_for(f"t{uuid.uuid4().hex[:10]}", *services))
    in_own_loop(provision(settings))
    folder = tmp_path_factory.mktemp("console")
    worker = (
        WorkerProcess(settings, folder, "console-worker", {"MUGPOS_HEARTBEAT_INTERVAL_S": "1"})
        if with_worker
        else None
    )
    in_own_loop(add_role_users(settings))
    server = ApiServer(settings).start()
    screenshots = folder / "screenshots"
    screenshots.mkdir()
    made = ConsoleStack(settings, server, worker, screenshots)
    try:
        yield made
    finally:
        for context in made.contexts:  # their live sockets, before the API goes
            with contextlib.suppress(PlaywrightError):
                context.close()
        server.stop()
        if worker is not None:
            worker.stop()
        print(f"console screenshots: {screenshots}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("no chromium on PATH: `make system-deps` installs Debian's chromium")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


def open_console(browser: Browser, stack: ConsoleStack, role: str, *, viewport=VIEWPORT) -> Page:
    """A fresh browser context signed in through the console's own form as the user `role`.
    Any request the page makes outside the app fails the test (the console works offline)."""
    context = browser.new_context(viewport=viewport)
    stack.contexts.append(context)
    context.add_init_script(CSP_WATCH)
    outside: list[str] = []

    def only_the_app(route) -> None:
        if route.request.url.startswith(stack.api.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_app)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.outside_requests = outside  # type: ignore[attr-defined] - read by the tests
    page.page_errors = errors  # type: ignore[attr-defined]
    page.goto(stack.api.url + "/")
    page.get_by_label("User name").fill(role)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("whoami")).to_contain_text(f"({role})")
    return page


def screenshot(page: Page, stack: ConsoleStack, name: str) -> Path:
    """A full-page screenshot in the run's output folder (not committed), checked non-empty."""
    path = stack.screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, f"empty screenshot {path}"
    return path


# Form controls a screen reader could not name: no <label>, no aria-label(ledby), no text.
UNLABELLED = """
[...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
  .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label")
    && !c.getAttribute("aria-labelledby") && !c.textContent.trim() && !c.title)
  .map((c) => c.outerHTML.slice(0, 100))
"""


def clean(page: Page) -> None:
    """No script error on the page, nothing its content security policy refused (an inline
    style or script would be), and nothing fetched from outside the app."""
    assert page.page_errors == [], page.page_errors  # type: ignore[attr-defined]
    assert page.evaluate("window.__cspViolations || []") == []
    if "/console/" in page.url:  # the API docs are Swagger UI's, not ours
        assert page.evaluate(UNLABELLED) == [], "controls without an accessible name"
    assert page.outside_requests == [], page.outside_requests  # type: ignore[attr-defined]
