"""A rule read back in words; the annotated picture draws what was found."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.imaging.annotate import FAIL_COLOUR, PASS_COLOUR, annotate
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
