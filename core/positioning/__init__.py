"""Positioning analysis: facts in centimetres, a quality score and the smallest fix, per mug."""

from core.positioning.analysis import CHECK_WORDS, analyze, estimate_scale
from core.positioning.facts import (
    Calibration,
    Move,
    MugFacts,
    PositioningConfig,
    ScaleEstimate,
    SceneFacts,
)
from core.positioning.perspective import Homography

__all__ = [
    "CHECK_WORDS",
    "Calibration",
    "Homography",
    "Move",
    "MugFacts",
    "PositioningConfig",
    "ScaleEstimate",
    "SceneFacts",
    "analyze",
    "estimate_scale",
]
