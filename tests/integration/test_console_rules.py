"""The console's Rules page in Chromium against the real API: live parse feedback while typing
(the column and a caret under it, or the explanation and structure), creating, versioning and
disabling a rule, a back-test over seeded stored results with its pass/fail chart, and what each
role sees. No worker: the back-test reads facts stored with results, seeded here directly."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from core.models.types import Detection
from core.positioning import Calibration, analyze
from core.positioning.serialize import facts_to_dict
from infra import mongo
from infra.results_history import result_document
from schemas.messages import AnalysisResult
from tests.integration.api_server import login
from tests.integration.console_harness import (
    PHONE,
    ConsoleStack,
    clean,
    in_own_loop,
    open_console,
    screenshot,
    stack,
)

GOOD = "Every mug must be on a coaster."
BAD = "Every mug must be on a cloud."
BAD_COLUMN = 24  # where the parser stops: "cloud" where "coaster" was expected
PASSING, FAILING = 4, 2  # seeded results with the mug on / off its coaster
SCALE = 4.0  # px per cm in the seeded scenes


def _box(role: str, cx: float, cy: float, size: float) -> Detection:
    half = size / 2 * SCALE
    return Detection(
        role,
        role,
        0.9,
        (cx * SCALE - half, cy * SCALE - half, cx * SCALE + half, cy * SCALE + half),
    )


def _result(i: int, on_coaster: bool, now: datetime) -> AnalysisResult:
    """A stored result whose facts have one mug, on a coaster or not (what back-tests read)."""
    table = Detection("table", "table", 0.9, (20 * SCALE, 20 * SCALE, 180 * SCALE, 130 * SCALE))
    scene = [table, _box("mug", 100, 75, 8.5)] + (
        [_box("coaster", 100, 75, 10)] if on_coaster else []
    )
    facts = analyze(scene, (800, 600), Calibration(px_per_cm=SCALE))
    return AnalysisResult(
        request_id=f"seed-{i}",
        source_id="console-rules",
        status="ok",
        completed_at=now - timedelta(seconds=i),
        positioning=facts_to_dict(facts),
    )


async def _seed(console: ConsoleStack) -> None:
    """The documents the pipeline's sink stores (result_document), written straight to MongoDB."""
    now = datetime.now(UTC)
    docs = [result_document(_result(i, i >= FAILING, now)) for i in range(PASSING + FAILING)]
    client = mongo.create_client(console.settings)
    try:
        await mongo.database(client, console.settings)[mongo.ANALYSIS_RESULTS].insert_many(docs)
    finally:
        client.close()


@pytest.fixture(scope="module")
def console(request, tmp_path_factory):
    yield from stack(request, tmp_path_factory, with_worker=False)


@pytest.fixture(scope="module", autouse=True)
def rule_id(console: ConsoleStack) -> str:
    """Stored results to back-test against, and one rule made through the API."""
    in_own_loop(_seed(console))
    reply = httpx.post(
        f"{console.api.url}/api/v1/rules",
        json={"text": "No mug within 10 cm of a laptop."},
        headers=login(console.api, "admin"),
    )
    reply.raise_for_status()
    return reply.json()["rule_id"]


def _backtest(page: Page, last: str = "50") -> None:
    page.get_by_label("Newest results to test").fill(last)
    page.get_by_role("button", name="Run backtest").click()


def _expect_chart(page: Page, passed: int, failed: int) -> None:
    """The chart's text alternative carries the counts; one bar per non-zero outcome, coloured."""
    chart = page.locator('.backtest-out svg[role="img"]')
    expect(chart).to_have_attribute("aria-label", re.compile(f"{passed} passed, {failed} failed"))
    bars = chart.locator("rect:has(title)")  # legend swatches have no title
    expect(bars).to_have_count(2)
    expect(bars.nth(0)).to_have_attribute("fill", "#1f9d4c")
    expect(bars.nth(1)).to_have_attribute("fill", "#d7263d")


def test_manager_checks_creates_versions_disables_and_backtests(
    browser, console: ConsoleStack, rule_id: str
) -> None:
    page = open_console(browser, console, "manager")
    page.goto(console.url + "#/rules")
    expect(page.get_by_role("heading", name="Rules", level=1)).to_be_visible()
    expect(page.locator(".rules-list")).to_contain_text(rule_id)
    editor = page.get_by_label("Rule in plain English")

    # A sentence the parser stops in: the column, a caret under it, and the closest phrasing.
    editor.fill(BAD)
    error = page.get_by_test_id("parse-error")
    expect(error).to_contain_text(f"column {BAD_COLUMN}")
    expect(error).to_have_attribute("role", "alert")
    caret = page.get_by_test_id("rule-caret")
    expect(caret).to_be_visible()
    assert caret.text_content() == f"{BAD}\n{' ' * (BAD_COLUMN - 1)}^"
    page.get_by_role("button", name=f"Go to column {BAD_COLUMN}").click()
    assert editor.evaluate("t => t.selectionStart") == BAD_COLUMN - 1

    # The suggestion fills the editor; the feedback follows without another keystroke.
    expect(page.get_by_test_id("suggestion")).to_have_text(GOOD)
    page.get_by_role("button", name="Use this phrasing").click()
    expect(editor).to_have_value(GOOD)
    expect(page.get_by_test_id("explanation")).to_have_text(
        "every mug must satisfy: on coaster is true [warning]"
    )
    expect(page.get_by_test_id("parse-ok").locator("dd code")).to_have_text("on coaster is true")
    expect(page.get_by_test_id("parse-error")).to_have_count(0)

    page.get_by_role("button", name="Create rule").click()
    expect(page.locator("#toast")).to_contain_text("Created rule-")
    expect(page).to_have_url(re.compile(r"#/rules/rule-[0-9a-f]+$"))
    created = page.url.rsplit("/", 1)[1]
    listed = page.locator(".rules-list tr", has_text=created)
    expect(listed).to_contain_text("Every mug must be on a coaster")
    expect(listed).to_contain_text("enabled")

    _backtest(page)
    expect(page.get_by_test_id("backtest-summary")).to_contain_text(
        re.compile(rf"Results evaluated\s*{PASSING + FAILING}")
    )
    _expect_chart(page, PASSING, FAILING)
    screenshot(page, console, "rules-manager")

    # A new version from the editor, then disabled (a further version) and enabled again.
    editor.fill("Every mug must be on a coaster (critical).")
    expect(page.get_by_test_id("explanation")).to_contain_text("[critical]")
    page.get_by_role("button", name="Save as new version").click()
    expect(page.locator("#toast")).to_contain_text("as version 2")
    expect(listed).to_contain_text("critical")
    page.get_by_role("button", name="Disable rule").click()
    expect(page.locator("#toast")).to_contain_text("Disabled")
    expect(listed).to_contain_text("disabled")
    expect(page.locator(".rules-open table tbody tr")).to_have_count(3)
    page.get_by_role("button", name="Enable rule").click()
    expect(listed).to_contain_text("enabled")
    expect(listed.locator("td").nth(2)).to_have_text("4")

    # A refused save says why beside the buttons, not as a raw exception.
    editor.fill("Mugs must be banana")
    page.get_by_role("button", name="Save as new version").click()
    expect(page.locator(".action-error [role=alert]")).to_contain_text("rule_syntax")
    clean(page)


def test_analyst_tries_and_backtests_but_cannot_save(
    browser, console: ConsoleStack, rule_id: str
) -> None:
    page = open_console(browser, console, "analyst")
    expect(page.locator("#nav").get_by_role("link", name="Rules")).to_be_visible()
    page.goto(console.url + f"#/rules/{rule_id}")
    expect(page.get_by_test_id("open-explanation")).to_contain_text("hazard distance (laptop)")
    page.get_by_label("Rule in plain English").fill(GOOD)
    expect(page.get_by_test_id("explanation")).to_contain_text("on coaster is true")
    for name in ("Create rule", "Save as new version", "Disable rule", "Enable rule"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    _backtest(page)
    # Nobody's mug is near a laptop in the seeded scenes: every result passes.
    _expect_chart_passed_only(page, PASSING + FAILING)
    page.goto(console.url + "#/rules/rule-missing")
    expect(page.locator(".rules-open [role=alert]")).to_contain_text("unknown_rule")
    clean(page)


def _expect_chart_passed_only(page: Page, passed: int) -> None:
    chart = page.locator('.backtest-out svg[role="img"]')
    expect(chart).to_have_attribute("aria-label", re.compile(f"{passed} passed, 0 failed"))
    expect(chart.locator("rect:has(title)")).to_have_count(1)


def test_viewer_cannot_open_rules(browser, console: ConsoleStack) -> None:
    page = open_console(browser, console, "viewer")
    expect(page.locator("#nav").get_by_role("link", name="Live")).to_be_visible()
    expect(page.locator("#nav").get_by_role("link", name="Rules")).to_have_count(0)
    page.goto(console.url + "#/rules")
    expect(page.get_by_text("Your role cannot open Rules.")).to_be_visible()
    expect(page.get_by_label("Rule in plain English")).to_have_count(0)
    clean(page)


def test_phone_width(browser, console: ConsoleStack, rule_id: str) -> None:
    page = open_console(browser, console, "manager", viewport=PHONE)
    page.goto(console.url + f"#/rules/{rule_id}")
    page.get_by_label("Rule in plain English").fill(BAD)
    expect(page.get_by_test_id("rule-caret")).to_be_visible()
    _backtest(page)
    expect(page.locator('.backtest-out svg[role="img"]')).to_be_visible()
    # Nothing wider than the phone: tables scroll inside their own wrapper.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, console, "rules-phone")
    clean(page)
