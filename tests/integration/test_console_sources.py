"""The console's Sources page against a real API: a manager creates a source, calibrates it by
clicking four points on its newest frame and typing the distances between them (a degenerate
choice is refused with the API's reason), draws and names a zone, sets and removes its camera
stream; all of it is read back through the API and after a reload. A viewer sees the same source
with no editing control.

No worker runs: the source's "newest frame" is a result stored the way the worker's sink stores
one (ResultStore, with the original image in the object store).
"""

from __future__ import annotations

import hashlib
import io
import math
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from core.positioning.perspective import Homography
from core.synth.render import render_scene
from core.synth.scene import sample_scene
from infra.clients import Clients
from infra.object_store.keys import upload_key
from infra.result_store import ResultStore
from schemas.messages import AnalysisResult, DetectionOut, ImageMeta
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

SIZE = 640  # the frame's natural size; it is shown at another size, so clicks must be scaled
# Calibration corners A, B, C, D as fractions of the shown frame (clockwise, a convex quad).
CORNERS = [(0.2, 0.2), (0.8, 0.22), (0.85, 0.8), (0.15, 0.78)]
ON_A_LINE = [(0.1, 0.5), (0.3, 0.5), (0.6, 0.5), (0.9, 0.5)]
ZONE = [(0.4, 0.4), (0.6, 0.4), (0.5, 0.6)]  # inside the calibrated quad
# A 120 x 80 cm rectangle given as distances: four sides and the diagonal AC.
DISTANCES = {"ab": 120, "bc": 80, "cd": 120, "da": 80, "ac": round(math.hypot(120, 80), 3)}
EDIT_CONTROLS = (
    '[data-page="sources"] input, [data-page="sources"] select, [data-page="sources"] textarea'
)


@pytest.fixture(scope="module")
def console(request, tmp_path_factory):
    yield from stack(request, tmp_path_factory, with_worker=False)


def store_frame(console: ConsoleStack, source_id: str) -> str:
    """A finished result of `source_id` with its original stored, as the worker's sink keeps
    one; returns its request id."""
    image, labels = render_scene(sample_scene(4711, SIZE), SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    request_id = f"r-{uuid.uuid4().hex[:16]}"

    async def save() -> None:
        clients = Clients.open(console.settings)
        now = datetime.now(UTC)
        key = upload_key(source_id, request_id, "jpg", now)
        results = ResultStore(
            clients.db,
            clients.store,
            clients.redis,
            console.settings.topic_prefix,
            console.settings.result_cache_ttl_s,
        )
        try:
            await clients.store.put(key, data, content_type="image/jpeg")
            meta = ImageMeta(
                width=SIZE,
                height=SIZE,
                format="JPEG",
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                object_key=key,
            )
            detections = [
                DetectionOut(
                    class_name=lab.class_name, role=lab.class_name, confidence=0.9, box=lab.box
                )
                for lab in labels
            ]
            result = AnalysisResult(
                request_id=request_id,
                source_id=source_id,
                status="ok",
                submitted_at=now,
                completed_at=now,
                image=meta,
                detections=detections,
            )
            await results.save([result])
        finally:
            await results.close()
            await clients.close()

    in_own_loop(save())
    return request_id


def api_source(console: ConsoleStack, source_id: str) -> dict:
    reply = httpx.get(
        f"{console.api.url}/api/v1/sources/{source_id}", headers=login(console.api, "admin")
    )
    reply.raise_for_status()
    return reply.json()


def click_frame(page: Page, fractions: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Click the frame at these fractions of its shown size; returns the image pixels each
    click should give (the frame is shown smaller or larger than its natural size)."""
    overlay = page.locator("canvas.src-overlay")
    box = overlay.bounding_box()
    assert box is not None
    assert abs(box["width"] - SIZE) > 20, "the frame is shown at its natural size: no scaling"
    expected = []
    for fx, fy in fractions:
        x, y = fx * box["width"], fy * box["height"]
        overlay.click(position={"x": x, "y": y})
        expected.append((x * SIZE / box["width"], y * SIZE / box["height"]))
    return expected


def assert_near(got, want) -> None:
    """An image point within 2 px of another (a click lands on whole CSS pixels)."""
    assert abs(got[0] - want[0]) <= 2, (got, want)
    assert abs(got[1] - want[1]) <= 2, (got, want)


def overlay_alpha(page: Page, x: float, y: float) -> int:
    """The overlay's opacity at an image pixel: a marker drawn there is opaque."""
    return page.locator("canvas.src-overlay").evaluate(
        "(c, [x, y]) => c.getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1).data[3]",
        [x, y],
    )


def test_manager_creates_calibrates_and_draws_a_zone(console: ConsoleStack, browser) -> None:
    source_id = f"desk-{uuid.uuid4().hex[:6]}"
    request_id = store_frame(console, source_id)
    page = open_console(browser, console, "manager")
    page.goto(console.url + "#/sources")
    expect(page.locator("#page-title")).to_have_text("Sources")

    # Create it from the list page; an id the API would refuse is refused here first.
    page.get_by_label("Source id").fill("bad id!")
    page.get_by_role("button", name="Create source").click()
    expect(page.locator("form [role=alert]")).to_contain_text("A source id is")
    page.get_by_label("Source id").fill(source_id)
    page.get_by_label("Name", exact=True).fill("Desk by the window")
    page.get_by_role("button", name="Create source").click()
    expect(page.locator("#page-title")).to_contain_text(f"Source {source_id}")
    expect(page.get_by_test_id("source-summary")).to_contain_text("Version 1")
    assert api_source(console, source_id)["source"]["name"] == "Desk by the window"

    # Its newest frame, drawn with the stored result's boxes.
    scene = page.locator("canvas.scene")
    expect(scene).to_have_attribute("data-ready", "true", timeout=10_000)
    expect(page.get_by_role("link", name=request_id)).to_be_visible()
    assert int(scene.get_attribute("data-shapes") or 0) > 0

    # Four points on one line: the API's reason, in the alert by the save button.
    calibration = page.locator('section[aria-labelledby="calibration-title"]')
    click_frame(page, ON_A_LINE)
    page.get_by_label("Real size given as").select_option("distances")
    for key, value in DISTANCES.items():
        calibration.locator(f'input[name="distance_{key}"]').fill(str(value))
    calibration.get_by_role("button", name="Save calibration").click()
    expect(calibration.get_by_role("alert")).to_contain_text("one line")
    expect(calibration.get_by_role("alert")).to_contain_text("source_invalid")
    assert api_source(console, source_id)["version"] == 1

    # Four good points: markers where clicked, the pixel positions in the fields, saved.
    calibration.get_by_role("button", name="Clear points").click()
    expect(page.locator("canvas.src-overlay")).to_have_attribute("data-points", "0")
    expected = click_frame(page, CORNERS)
    expect(page.locator("canvas.src-overlay")).to_have_attribute("data-points", "4")
    for (x, y), name in zip(expected, "ABCD", strict=True):
        shown_x = float(calibration.locator(f'input[name="point_{name}_x"]').input_value())
        shown_y = float(calibration.locator(f'input[name="point_{name}_y"]').input_value())
        assert_near((shown_x, shown_y), (x, y))
        assert overlay_alpha(page, shown_x, shown_y) == 255
    assert overlay_alpha(page, 5, SIZE - 5) == 0  # nothing drawn away from the markers
    calibration.get_by_role("button", name="Save calibration").click()
    expect(page.get_by_test_id("source-summary")).to_contain_text("Version 2")
    expect(calibration.get_by_role("alert")).to_have_text("")
    stored = api_source(console, source_id)["source"]["calibration"]
    assert stored["kind"] == "four_points"
    assert stored["distances_cm"] == {**DISTANCES, "bd": None}
    points = stored["image_points"]
    for clicked, point in zip(expected, points, strict=True):
        assert_near(point, clicked)

    # Persisted: a reload shows the stored points and distances.
    page.reload()
    calibration = page.locator('section[aria-labelledby="calibration-title"]')
    expect(calibration.locator('input[name="point_C_x"]')).to_have_value(_number(points[2][0]))
    expect(calibration.locator('input[name="distance_ac"]')).to_have_value(_number(DISTANCES["ac"]))
    expect(calibration.locator("select[name=calibration_kind]")).to_have_value("four_points")
    expect(page.locator("canvas.src-overlay")).to_have_attribute("data-points", "4")

    # A zone: three corners clicked, named, finished, listed, saved.
    zones = page.locator('section[aria-labelledby="zones-title"]')
    expect(page.locator("canvas.scene")).to_have_attribute("data-ready", "true", timeout=10_000)
    page.get_by_label("Zone corner").check()
    zone_points = click_frame(page, ZONE)
    expect(page.locator("canvas.src-overlay")).to_have_attribute("data-draft", "3")
    expect(page.locator("canvas.src-overlay")).to_have_attribute("data-points", "4")  # unchanged
    zones.get_by_role("button", name="Finish zone").click()
    expect(zones.get_by_role("alert").first).to_have_text("Name the zone.")
    zones.get_by_label("Zone name").fill("tray")
    zones.get_by_role("button", name="Finish zone").click()
    expect(zones.locator("table")).to_contain_text("tray")
    expect(zones).to_contain_text("Changes not saved yet")
    zones.get_by_role("button", name="Save zones").click()
    expect(page.get_by_test_id("source-summary")).to_contain_text("Version 3")
    expect(zones).not_to_contain_text("Changes not saved yet")
    zone = api_source(console, source_id)["source"]["zones"]["tray"]
    assert zone["unit"] == "px"
    for clicked, corner in zip(zone_points, zone["polygon"], strict=True):
        assert_near(corner, clicked)
    assert api_source(console, source_id)["source"]["calibration"]["kind"] == "four_points"
    page.reload()
    expect(page.locator('section[aria-labelledby="zones-title"] table')).to_contain_text("tray")

    # Rules by tag and a model.
    settings = page.locator('section[aria-labelledby="settings-title"]')
    settings.get_by_label("Only rules with one of these tags").check()
    settings.get_by_label("Tags (comma separated)").fill("office, kitchen")
    settings.get_by_label("Model").fill("mugdet-synth:1.1.0")
    settings.get_by_role("button", name="Save settings").click()
    expect(page.get_by_test_id("source-summary")).to_contain_text("Version 4")
    spec = api_source(console, source_id)["source"]
    assert spec["rules"] == {"tags": ["office", "kitchen"]}
    assert spec["model"] == "mugdet-synth:1.1.0"
    assert spec["zones"]["tray"] == zone  # one panel's save keeps the others' settings

    # The camera stream: its password is never shown again; then removed.
    stream = page.locator('section[aria-labelledby="stream-title"]')
    expect(stream).to_contain_text("No stream is registered")
    stream.get_by_label("Camera URL").fill("rtsp://cam:s3cret@camera-7.lan/stream1")
    stream.get_by_role("button", name="Save stream").click()
    facts = page.get_by_test_id("stream-facts")
    expect(facts).to_contain_text("rtsp://cam:***@camera-7.lan/stream1")
    expect(facts).to_contain_text("not picked up yet")
    expect(page.locator("body")).not_to_contain_text("s3cret")
    screenshot(page, console, "sources-detail-desktop")
    page.goto(console.url + "#/sources")
    row = page.locator("tr", has=page.get_by_role("link", name=source_id))
    expect(row).to_contain_text("Desk by the window")
    expect(row).to_contain_text("not picked up yet")
    expect(row.locator("td").nth(2)).to_have_text("4")
    screenshot(page, console, "sources-list-desktop")
    page.get_by_role("link", name=source_id).click()
    stream = page.locator('section[aria-labelledby="stream-title"]')
    stream.get_by_role("button", name="Remove stream").click()
    stream.get_by_role("button", name="Yes, remove the stream").click()
    expect(stream).to_contain_text("No stream is registered")
    clean(page)
    page.context.close()

    phone = open_console(browser, console, "manager", viewport=PHONE)
    phone.goto(console.url + f"#/sources/{source_id}")
    expect(phone.locator("canvas.scene")).to_have_attribute("data-ready", "true", timeout=10_000)
    expect(phone.locator("canvas.src-overlay")).to_have_attribute("data-points", "4")
    screenshot(phone, console, "sources-detail-phone")
    phone.goto(console.url + "#/sources")
    expect(phone.get_by_role("link", name=source_id)).to_be_visible()
    screenshot(phone, console, "sources-list-phone")

    # Deleting asks once more in the page, then the source leaves the list (its history stays).
    phone.get_by_role("link", name=source_id).click()
    phone.get_by_role("button", name="Delete source").click()
    phone.get_by_role("button", name=f"Yes, delete {source_id}").click()
    expect(phone.locator("#page-title")).to_have_text("Sources")
    expect(phone.get_by_role("link", name=source_id)).to_have_count(0)
    gone = httpx.get(
        f"{console.api.url}/api/v1/sources/{source_id}", headers=login(console.api, "admin")
    )
    assert gone.status_code == 404
    clean(phone)
    phone.context.close()


def _number(value: float) -> str:
    """A number as the console writes it into a field (JavaScript's String(number))."""
    return str(int(value)) if float(value).is_integer() else str(value)


def test_viewer_sees_a_source_without_editing_controls(console: ConsoleStack, browser) -> None:
    source_id = f"cam-{uuid.uuid4().hex[:6]}"
    admin = login(console.api, "admin")
    spec = {
        "name": "Kitchen camera",
        "calibration": {
            "kind": "four_points",
            "image_points": [[128, 128], [512, 140], [544, 512], [96, 500]],
            "rectangle_cm": [120, 80],
            "table_top": True,
        },
        "zones": {"tray": {"polygon": [[0, 0], [40, 0], [40, 30], [0, 30]], "unit": "cm"}},
        "rules": {"tags": ["kitchen"]},
    }
    base = f"{console.api.url}/api/v1/sources/{source_id}"
    httpx.put(base, json=spec, headers=admin).raise_for_status()
    stream = {"url": "rtsp://viewer:hidden@camera-9.lan/live"}
    httpx.put(f"{base}/stream", json=stream, headers=admin).raise_for_status()
    store_frame(console, source_id)

    page = open_console(browser, console, "viewer")
    page.goto(console.url + "#/sources")
    expect(page.get_by_role("link", name=source_id)).to_be_visible()
    expect(page.get_by_role("button", name="Create source")).to_have_count(0)
    expect(page.locator(EDIT_CONTROLS)).to_have_count(0)

    page.get_by_role("link", name=source_id).click()
    expect(page.locator("#page-title")).to_contain_text("Kitchen camera")
    expect(page.locator("canvas.scene")).to_have_attribute("data-ready", "true", timeout=10_000)
    expect(page.locator("canvas.src-overlay")).to_have_attribute("data-points", "4")
    expect(page.get_by_test_id("calibration-text")).to_contain_text(
        "120 \u00d7 80 cm (the table top)"
    )
    expect(page.locator('section[aria-labelledby="zones-title"]')).to_contain_text("tray")
    # The zone in table cm, drawn where the calibration puts it in the picture.
    plane = Homography.from_rectangle(spec["calibration"]["image_points"], 120, 80)
    assert overlay_alpha(page, *plane.to_image((20, 15))) > 0
    assert overlay_alpha(page, *plane.to_image((60, 50))) == 0  # inside the table, off the zone
    expect(page.locator('section[aria-labelledby="settings-title"]')).to_contain_text(
        "Rules tagged kitchen"
    )
    expect(page.get_by_test_id("stream-facts")).to_contain_text(
        "rtsp://viewer:***@camera-9.lan/live"
    )
    expect(page.locator("body")).not_to_contain_text("hidden@")
    expect(page.locator(EDIT_CONTROLS)).to_have_count(0)
    for name in ("Save calibration", "Save zones", "Save settings", "Save stream", "Delete source"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.locator("canvas.src-overlay.src-clickable")).to_have_count(0)
    screenshot(page, console, "sources-detail-viewer")
    clean(page)
    page.context.close()
