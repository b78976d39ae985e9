"""Advice people can act on: for each situation the exact sentence — the action, how far and
which way, and how things stand now; what no move fixes gets what to do instead."""

from __future__ import annotations

import pytest

from core.models.types import Detection
from core.positioning import Calibration, analyze
from tests.unit.test_positioning import CALIBRATED, IMAGE, SCALE, TABLE, coaster, det, mug


def laptop(x0: float, y0: float, x1: float, y1: float) -> Detection:
    return det("hazard", x0, y0, x1, y1, name="laptop")


NARROW = det("table", 20, 20, 60, 130)  # 40 cm wide
TRAY = (
    (40 * SCALE, 40 * SCALE),
    (90 * SCALE, 40 * SCALE),
    (90 * SCALE, 90 * SCALE),
    (40 * SCALE, 90 * SCALE),
)

# (situation, scene: the first mug is the one advised, expected advice)
CASES: list[tuple[str, list[Detection], str]] = [
    (
        "a lone mug, no coaster anywhere",
        [TABLE, mug(100, 75)],
        "No coaster in view: put one under this mug.",
    ),
    (
        "a free coaster beside it",
        [TABLE, mug(100, 75), coaster(76, 75)],
        "Move it 24 cm left onto the free coaster.",
    ),
    (
        "the only coaster is under another mug",
        [TABLE, mug(100, 75), mug(60, 75), coaster(60, 75)],
        "No free coaster in view: put one under this mug.",
    ),
    (
        "on a coaster, close to the left edge",
        [TABLE, mug(26, 75), coaster(26, 75)],
        "Move it and its coaster 4 cm right toward the table centre (now 1.8 cm from the left edge).",
    ),
    (
        "on a coaster, over the bottom edge",
        [TABLE, mug(100, 128), coaster(100, 128)],
        "Move it and its coaster 8 cm up back onto the table (now 2 cm over the bottom edge).",
    ),
    (
        "on a coaster, near a laptop",
        [TABLE, mug(100, 75), coaster(100, 75), laptop(110, 60, 150, 90)],
        "Move it and its coaster 5 cm left away from the laptop (now 6 cm from it).",
    ),
    (
        "a little too close to the next mug",
        [TABLE, mug(100, 75), coaster(100, 75), mug(110, 75), coaster(112, 75)],
        "Move it and its coaster 0.6 cm left away from the other mug (now 1.5 cm from it).",
    ),
    (
        "overlapping the next mug",
        [TABLE, mug(100, 75), coaster(100, 75), mug(105, 75), coaster(107, 75)],
        "Move it and its coaster 6 cm left away from the other mug (now overlapping it).",
    ),
    (
        "hemmed in between the edge and a laptop (pushes cancel: a spot is searched)",
        [TABLE, mug(26, 75), coaster(26, 75), laptop(34, 60, 70, 90)],
        "Move it and its coaster 5 cm right and 30 cm up toward the table centre "
        "(now 1.8 cm from the left edge) and away from the laptop (now 4 cm from it).",
    ),
    (
        "near the edge with no coaster: one move, one thing to add",
        [TABLE, mug(25, 75)],
        "Move it 5 cm right toward the table centre (now 0.8 cm from the left edge). "
        "No coaster in view: put one under this mug.",
    ),
    (
        "near the edge, a free coaster far away fixes both",
        [TABLE, mug(25, 75), coaster(150, 75)],
        "Move it 125 cm right onto the free coaster and toward the table centre "
        "(now 0.8 cm from the left edge).",
    ),
    (
        "a narrow table with a laptop: only a little room left of it",
        [NARROW, mug(40, 75), coaster(40, 75), laptop(48, 20, 60, 130)],
        "Move it and its coaster 7 cm left away from the laptop (now 4 cm from it).",
    ),
    (
        "impossible: the laptop fills the table",
        [NARROW, mug(40, 75), coaster(40, 75), laptop(30, 20, 50, 130)],
        "No spot on this table is 10 cm from the laptop: move the laptop away.",
    ),
    (
        "impossible: the table is narrower than the edge margins",
        [det("table", 20, 20, 36, 130), mug(28, 75), coaster(28, 75)],
        "No spot on this table is 5 cm from every edge: use a larger table.",
    ),
]


@pytest.mark.parametrize(("situation", "scene", "expected"), CASES, ids=[c[0] for c in CASES])
def test_advice_names_the_action_and_its_numbers(
    situation: str, scene: list[Detection], expected: str
) -> None:
    advice = analyze(scene, IMAGE, CALIBRATED).mugs[0].recommendation
    assert advice is not None, situation
    assert advice.text == expected
    assert "slightly" not in advice.text
    moves = (advice.dx_cm, advice.dy_cm) != (0.0, 0.0)
    assert moves == advice.text.startswith("Move")  # a stated move is a real one, and vice versa


def test_outside_the_zone() -> None:
    calibration = Calibration(px_per_cm=SCALE, zones={"tray": TRAY})
    advice = analyze([TABLE, mug(120, 60), coaster(120, 60)], IMAGE, calibration).mugs[0]
    assert advice.recommendation is not None
    assert (
        advice.recommendation.text == "Move it and its coaster 35 cm left into the placement zone."
    )


def test_a_model_that_cannot_see_coasters_gets_no_coaster_advice() -> None:
    facts = analyze([TABLE, mug(25, 75)], IMAGE, CALIBRATED, unseen=frozenset({"coaster"}))
    advice = facts.mugs[0].recommendation
    assert advice is not None
    assert (
        advice.text == "Move it 5 cm right toward the table centre (now 0.8 cm from the left edge)."
    )
