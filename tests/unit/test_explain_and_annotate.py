"""A rule read back in words; the annotated picture draws what was found."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from api.routes import analyze
from core.imaging.annotate import (
    FAIL_COLOUR,
    LEGEND_BACKGROUND,
    PASS_COLOUR,
    REASON_MAX_CHARS,
    ROLE_COLOURS,
    annotate,
    scale_for,
    shorten,
)
from core.rules import parse_rule
from core.rules.explain import explain


def test_explanations_of_the_sentence_families() -> None:
    cases = {
        "Every mug must be on a coaster.": "every mug must satisfy: on coaster is true [warning]",
        "No mug within 10 cm of a laptop.": (
            "every mug must satisfy: not (hazard distance (laptop) ≤ 10 cm) [warning]"
        ),
        "Flag detections below 60% confidence for review.": (
            "every detection is flagged when: confidence < 60% [warning]; then: review"
        ),
        "If a mug is off its coaster and within 3 cm of the edge, alert (critical).": (
            "every mug is flagged when: on coaster is false and edge distance ≤ 3 cm "
            "[critical]; then: alert"
        ),
    }
    for sentence, expected in cases.items():
        assert explain(parse_rule(sentence)) == expected


def test_annotation_colours_mugs_by_verdict() -> None:
    canvas = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(canvas, format="PNG")
    jpeg = annotate(
        canvas.getvalue(),
        [("coaster", "coaster", 0.9, (5, 5, 60, 60))],
        [((10, 10, 50, 50), True), ((110, 10, 150, 50), False)],
    )
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    assert np.abs(pixels[30, 10] - PASS_COLOUR).sum() < 80  # left edge of the passing mug
    assert np.abs(pixels[30, 110] - FAIL_COLOUR).sum() < 80  # left edge of the failing mug
    assert np.abs(pixels[90, 180] - (255, 255, 255)).sum() < 30  # untouched background


def _blank(width: int, height: int) -> bytes:
    canvas = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(canvas, format="PNG")
    return canvas.getvalue()


def _pixels(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)


def _near(region: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> np.ndarray:
    """Which pixels of `region` are `colour`, give or take JPEG's error."""
    return np.abs(region - np.array(colour)).sum(axis=-1) < tolerance


def test_sizes_scale_with_the_picture_and_stay_legible_when_small() -> None:
    small, large = scale_for((480, 360)), scale_for((1920, 1440))
    assert large.font_px > 2 * small.font_px
    assert large.line_px > small.line_px
    tiny = scale_for((100, 60))
    assert (tiny.font_px, tiny.line_px) == (12, 2)  # the floors
    assert scale_for((3840, 600)) == scale_for((600, 600))  # the shorter side decides


def _label_height(side: int) -> int:
    """Rows of the coaster's filled label above its box, on a `side` px square picture."""
    box = (side * 0.3, side * 0.5, side * 0.7, side * 0.8)
    pixels = _pixels(annotate(_blank(side, side), [("coaster", "coaster", 0.9, box)], []))
    column = pixels[: int(box[1]), int(box[0]) + 1]  # just inside the label's left end
    return int(_near(column, ROLE_COLOURS["coaster"]).sum())


def test_drawn_labels_grow_with_the_picture() -> None:
    small, large = _label_height(480), _label_height(1920)
    assert small >= 12
    assert large > 2.5 * small


def test_the_legend_shows_both_verdict_colours_in_a_free_corner() -> None:
    jpeg = annotate(_blank(640, 480), [], [((400, 300, 500, 400), True)])
    corner = _pixels(jpeg)[:60, :200]  # top-left: nothing else is drawn there
    assert _near(corner, LEGEND_BACKGROUND).sum() > 500
    assert _near(corner, PASS_COLOUR).sum() > 50
    assert _near(corner, FAIL_COLOUR).sum() > 50


def test_the_legend_moves_off_a_mug_in_its_corner() -> None:
    jpeg = annotate(_blank(640, 480), [], [((20, 40, 180, 200), False)])
    pixels = _pixels(jpeg)
    assert _near(pixels[100:110, 100:110], (255, 255, 255)).all()  # inside the mug: untouched
    assert _near(pixels[:60, -200:], LEGEND_BACKGROUND).sum() > 500  # top-right instead


@pytest.mark.parametrize("reason", [None, "off coaster, Every mug must be on a coaster"])
def test_a_failing_mug_says_why_below_its_box(reason: str | None) -> None:
    box = (200, 150, 300, 250)
    reasons = {0: reason} if reason else {}
    jpeg = annotate(_blank(640, 480), [], [(box, False)], reasons=reasons)
    below = _pixels(jpeg)[255:275, 200:400]  # under the box, right of its left edge
    drawn = ~_near(below, (255, 255, 255), tolerance=90)
    if reason:
        assert _near(below, FAIL_COLOUR).sum() > 500  # the filled caption
        assert drawn.sum() > 1000
    else:
        assert drawn.sum() == 0


def test_a_passing_mug_has_no_reason_drawn() -> None:
    jpeg = annotate(_blank(640, 480), [], [((200, 150, 300, 250), True)], reasons={0: "stale"})
    below = _pixels(jpeg)[255:275, 200:400]
    assert _near(below, (255, 255, 255), tolerance=90).all()


def test_reasons_are_cut_to_a_caption() -> None:
    assert shorten("off coaster") == "off coaster"
    cut = shorten("near edge, " * 10)
    assert len(cut) <= REASON_MAX_CHARS
    assert cut.endswith("…")


def test_render_passes_each_failing_mug_its_checks_and_failed_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def capture(original: bytes, detections: Any, mugs: Any, *, reasons: Any) -> bytes:
        seen.update(mugs=mugs, reasons=reasons)
        return b"jpeg"

    monkeypatch.setattr(analyze, "annotate", capture)
    verdict = {"rule_id": "r-1", "name": "Mugs on coasters", "passed": False, "subjects": [1, 2]}
    result = {
        "positioning": {
            "mugs": [
                {"index": 0, "box": [0, 0, 10, 10], "failing": []},
                {"index": 1, "box": [20, 0, 30, 10], "failing": ["coaster", "edge"]},
                {"index": 2, "box": [40, 0, 50, 10], "failing": []},
            ]
        },
        "verdicts": [verdict, {**verdict, "rule_id": "r-2", "passed": True, "subjects": [0]}],
    }
    assert analyze._render(b"", result) == b"jpeg"
    assert [passed for _, passed in seen["mugs"]] == [True, False, False]
    assert seen["reasons"] == {
        1: "off coaster, near edge, Mugs on coasters",
        2: "Mugs on coasters",
    }
