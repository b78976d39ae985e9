"""Detections as the rest of the system sees them: class, role, confidence, box in image pixels."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels


@dataclass(frozen=True, slots=True)
class Detection:
    class_name: str
    role: str  # mug | coaster | table | hazard | other (see ClassMap)
    confidence: float
    box: Box
