"""The web console in a real browser against a real API and worker: sign in, upload two scenes
and watch their results arrive live with their boxes, open one, page the history, and what a
viewer does not get. The Rules, Sources, Workers and Dashboard pages have modules of their own."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from api.routes import analyze
from core.positioning import CHECK_WORDS
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

RESULT_TIMEOUT_MS = 90_000  # a fresh worker exports its model before the first result


@pytest.fixture(scope="module")
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleStack]:
    yield from stack(request, tmp_path_factory, with_worker=True)


def _scenes(folder: Path) -> list[Path]:
    paths = []
    for seed in (11, 12):
        path = folder / f"scene-{seed}.jpg"
        path.write_bytes(scene_jpeg(seed, 640))
        paths.append(path)
    return paths


def _drawn(page: Page, request_id: str) -> None:
    """The card of `request_id` shows its picture with boxes drawn by the browser."""
    card = page.locator(f'[data-request-id="{request_id}"]')
    expect(card.locator("canvas[data-shapes]")).to_have_count(1, timeout=RESULT_TIMEOUT_MS)
    shapes = int(card.locator("canvas").get_attribute("data-shapes") or 0)
    assert shapes > 0, f"no box drawn on {request_id}"
    width = card.locator("canvas").evaluate("c => c.width")
    assert width == 640, width  # the stored original, at its own size


def _mug_card(page: Page, request_id: str) -> bool:
    """Whether the card's result has a mug (its page then lists facts per mug)."""
    card = page.locator(f'[data-request-id="{request_id}"]')
    return card.locator("canvas").evaluate("c => c.dataset.mugs !== '0'")


def _failing_mugs_said(page: Page, console: ConsoleStack, ids: list[str]) -> int:
    """Each card's picture tells a screen reader every failing mug's caption, and in the words
    of the annotated JPEG's (api.routes.analyze._reason), which the browser has from the API's
    words module. Returns how many failing mugs were checked."""
    headers = login(console.api, "analyst")
    checked = 0
    for request_id in ids:
        reply = httpx.get(f"{console.api.url}/api/v1/analyze/{request_id}", headers=headers)
        reply.raise_for_status()
        result = reply.json()
        canvas = page.locator(f'[data-request-id="{request_id}"] canvas')
        said = canvas.get_attribute("aria-label") or ""
        failed = analyze._failed_rules(result)
        for mug in (result.get("positioning") or {}).get("mugs", []):
            reason = analyze._reason(mug, failed.get(mug["index"], []))
            if reason:
                assert f"mug {mug['index']}: {reason}" in said, (reason, said)
                checked += 1
            else:
                assert re.search(rf"\bmug {mug['index']}(;|$)", said), said  # no reason after it
    return checked


def test_root_leads_to_the_console_and_its_pages_are_guarded(console: ConsoleStack) -> None:
    reply = httpx.get(console.api.url + "/", follow_redirects=False)
    assert reply.status_code == 307
    assert reply.headers["location"] == "/console/"
    page = httpx.get(console.url)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(console.url + "js/app.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    words = httpx.get(console.url + "js/words.js")  # made from core.positioning, not a file
    assert words.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in words.headers["content-security-policy"]
    exported = words.text.removeprefix("export const CHECK_WORDS = ").strip().removesuffix(";")
    assert json.loads(exported) == CHECK_WORDS


def test_upload_two_scenes_and_see_them_live_then_open_one(
    browser: Browser, console: ConsoleStack, tmp_path: Path
) -> None:
    watcher = open_console(browser, console, "analyst")
    expect(watcher.get_by_test_id("live-state")).to_have_text("live", timeout=30_000)
    uploader = open_console(browser, console, "analyst")
    uploader.get_by_role("link", name="Upload").click()
    uploader.get_by_label("Choose pictures").set_input_files([str(p) for p in _scenes(tmp_path)])
    done = uploader.get_by_test_id("upload-results").get_by_test_id("result-card")
    expect(done).to_have_count(2, timeout=RESULT_TIMEOUT_MS)
    ids = [done.nth(i).get_attribute("data-request-id") for i in range(2)]
    for request_id in ids:
        _drawn(uploader, request_id)
        _drawn(watcher, request_id)  # arrived over the WebSocket on the other page
    assert _failing_mugs_said(watcher, console, ids), "neither scene has a failing mug to say"
    screenshot(uploader, console, "upload")
    screenshot(watcher, console, "live")

    with_mug = next(i for i in ids if _mug_card(watcher, i))
    watcher.locator(f'[data-request-id="{with_mug}"] a').click()
    expect(watcher.get_by_role("heading", level=1)).to_contain_text(with_mug)
    mugs = watcher.get_by_role("heading", name="Mugs").locator("xpath=following-sibling::*[1]")
    expect(mugs.locator("tbody tr").first).to_contain_text("cm")  # facts in centimetres
    expect(watcher.locator("canvas[data-shapes]")).to_have_count(1, timeout=30_000)
    expect(watcher.get_by_text("Raw JSON")).to_be_visible()
    watcher.get_by_role("button", name="Show the annotated JPEG").click()
    annotated = watcher.get_by_role("img", name=f"Annotated JPEG of {with_mug}")
    expect(annotated).to_be_visible(timeout=30_000)
    assert annotated.evaluate("i => i.complete && i.naturalWidth") == 640
    timings = watcher.get_by_role("heading", name="Timings").locator(
        "xpath=following-sibling::*[1]"
    )
    expect(timings.locator("tbody tr").first).to_be_visible()
    screenshot(watcher, console, "result")

    watcher.get_by_role("link", name="History").click()
    rows = watcher.get_by_test_id("history-results").locator("tbody tr")
    expect(rows).to_have_count(2)
    watcher.get_by_label("Status").select_option("rejected")
    watcher.get_by_role("button", name="Apply").click()
    expect(watcher.get_by_test_id("history-results")).to_contain_text("No result matches.")
    screenshot(watcher, console, "history")
    for page in (watcher, uploader):
        clean(page)


def test_a_viewer_gets_no_write_controls_and_a_phone_gets_the_same_console(
    browser: Browser, console: ConsoleStack
) -> None:
    page = open_console(browser, console, "viewer", viewport=PHONE)
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Live")).to_be_visible()
    for hidden in ("Upload", "Rules", "Workers"):
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    page.goto(console.url + "#/upload")
    expect(page.get_by_text("Your role cannot open Upload.")).to_be_visible()
    # The keyboard's first stop skips the menu to the page itself.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, console, "viewer-phone")
    clean(page)


def test_a_wrong_password_is_told_plainly(browser: Browser, console: ConsoleStack) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(console.url)
    page.get_by_label("User name").fill("viewer")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong username or password")
    context.close()


def test_the_api_docs_render_offline(browser: Browser, console: ConsoleStack) -> None:
    """Swagger UI from the app's own files: no request leaves it, and the operations show."""
    page = open_console(browser, console, "viewer")
    page.get_by_role("link", name="API docs").click()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "Mug Positioning", timeout=30_000
    )
    expect(page.locator(".opblock").first).to_be_visible()
    screenshot(page, console, "api-docs")
    clean(page)
