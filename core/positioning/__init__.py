"""Positioning analysis: facts in centimetres, a quality score and the smallest fix, per mug."""

from core.positioning.analysis import analyze, estimate_scale
from core.positioning.facts import (
    Calibration,
    Move,
    MugFacts,
    PositioningConfig,
    ScaleEstimate,
    SceneFacts,
)

__all__ = [
    "Calibration",
    "Move",
    "MugFacts",
    "PositioningConfig",
    "ScaleEstimate",
    "SceneFacts",
    "analyze",
    "estimate_scale",
]
