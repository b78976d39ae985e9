"""A source's settings turned into what the analysis uses: its calibration, its zones in the
frame the analysis measures in, and which rules apply."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.rules import compile_rule, parse_rule
from core.sources import SourceSetupError, SourceSpec, source_setup

A4_POINTS = [[120.0, 80.0], [520.0, 90.0], [600.0, 420.0], [40.0, 400.0]]


def _spec(**fields: object) -> SourceSpec:
    return SourceSpec.model_validate(fields)


def test_a_source_without_settings_changes_nothing() -> None:
    setup = source_setup("cam", 1, SourceSpec())
    assert (setup.calibration, setup.rule_tags, setup.model) == (None, None, None)


def test_zones_in_cm_are_scaled_to_px_with_a_scale_calibration() -> None:
    spec = _spec(
        calibration={"kind": "scale", "px_per_cm": 4.0},
        zones={
            "tray": {"polygon": [[1, 1], [11, 1], [11, 6]], "unit": "cm"},
            "mat": {"polygon": [[0, 0], [8, 0], [8, 8]], "unit": "px"},
        },
    )
    calibration = source_setup("cam", 1, spec).calibration
    assert calibration is not None
    assert calibration.px_per_cm == 4.0
    assert calibration.zones["tray"] == ((4.0, 4.0), (44.0, 4.0), (44.0, 24.0))
    assert calibration.zones["mat"] == ((0.0, 0.0), (8.0, 0.0), (8.0, 8.0))


def test_with_four_points_zones_are_on_the_table_plane_in_cm() -> None:
    spec = _spec(
        calibration={"kind": "four_points", "image_points": A4_POINTS, "rectangle_cm": [29.7, 21]},
        zones={
            "sheet": {"polygon": A4_POINTS, "unit": "px"},
            "corner": {"polygon": [[0, 0], [5, 0], [5, 5]], "unit": "cm"},
        },
    )
    calibration = source_setup("cam", 1, spec).calibration
    assert calibration is not None
    assert calibration.homography is not None
    sheet = calibration.zones["sheet"]
    for got, want in zip(sheet, [(0, 0), (29.7, 0), (29.7, 21), (0, 21)], strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    assert calibration.zones["corner"] == ((0.0, 0.0), (5.0, 0.0), (5.0, 5.0))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (
            {"zones": {"z": {"polygon": [[0, 0], [1, 0], [1, 1]], "unit": "cm"}}},
            "needs a calibration",
        ),
        (
            {
                "calibration": {
                    "kind": "four_points",
                    "image_points": [[0, 0], [10, 0], [20, 0], [30, 0]],
                    "rectangle_cm": [10, 10],
                }
            },
            "one line",
        ),
    ],
)
def test_settings_the_analysis_cannot_use_are_refused_with_the_reason(
    fields: dict, says: str
) -> None:
    with pytest.raises(SourceSetupError, match=says):
        source_setup("cam", 1, _spec(**fields))


def test_a_four_point_calibration_takes_one_size() -> None:
    with pytest.raises(ValidationError, match="exactly one of rectangle_cm and distances_cm"):
        _spec(calibration={"kind": "four_points", "image_points": A4_POINTS})


def test_rules_apply_by_tag() -> None:
    kitchen = compile_rule(
        parse_rule("Every mug must be on a coaster.").model_copy(update={"tags": ["kitchen"]}), "k"
    )
    everywhere = compile_rule(parse_rule("At most 2 mugs per table."), "e")
    rules = (kitchen, everywhere)
    assert source_setup("cam", 1, SourceSpec()).rules(rules) == rules
    tagged = source_setup("cam", 1, _spec(rules={"tags": ["kitchen", "bar"]}))
    assert tagged.rules(rules) == (kitchen,)


def test_four_points_on_the_table_corners_give_the_table_top() -> None:
    calibration = {
        "kind": "four_points",
        "image_points": A4_POINTS,
        "rectangle_cm": [120, 80],
        "table_top": True,
    }
    setup = source_setup("cam", 1, _spec(calibration=calibration))
    assert setup.calibration is not None
    assert setup.calibration.table_cm == (0.0, 0.0, 120.0, 80.0)
    distances = {"ab": 120, "bc": 80, "cd": 120, "da": 80, "ac": 144.22}
    by_distances = {**calibration, "rectangle_cm": None, "distances_cm": distances}
    with pytest.raises(SourceSetupError, match="table_top needs"):
        source_setup("cam", 1, _spec(calibration=by_distances))
