"""Detections moved onto the table plane, so that an angled picture is measured in true cm.

The analysis measures boxes in one frame with one scale. With a homography that frame is the table
plane: each detection becomes the box of its footprint there (core.positioning.footprint), in
pseudo-pixels of `PX_PER_CM` per cm shifted to be positive, and the analysis runs unchanged on them
with that exact scale.

A table side the picture's border cuts is no edge in the picture, and stays none on the plane: it
is pushed to the plane frame's border, where `visible_sides` ignores it; so is a side beyond the
plane's horizon. A detection whose footprint lies beyond the horizon cannot stand on the plane and
is left out. A table top given with the calibration (`Calibration.table_cm`) replaces the detected
table boxes: its four sides are edges wherever the picture cuts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from core.models.types import Detection
from core.positioning.facts import Calibration
from core.positioning.footprint import SIDE_NAMES, Sides, disc, rectangle
from core.positioning.geometry import Box, Point
from core.positioning.perspective import Homography

PX_PER_CM = 10.0  # plane-frame pseudo-pixels per cm: fine enough for the analysis' px margins
MARGIN_CM = 10.0  # room around everything, so that no real table side meets the frame's border
# The sides of a mug's box that touch its base (core.positioning.footprint), best first.
MUG_SIDES = ("bottom", "left", "right")


@dataclass(frozen=True, slots=True)
class PlaneScene:
    """The detections as footprints in the plane frame, and what is needed to report back."""

    detections: tuple[Detection, ...]
    size: tuple[int, int]  # the plane frame, in pseudo-pixels
    zones: dict[str, tuple[Point, ...]]  # in the plane frame
    mug_boxes: tuple[Box, ...]  # the mugs' image boxes, in the order of their footprints


def _round(
    homography: Homography, box: Box, cut: frozenset[str], preferred: Sequence[str]
) -> Box | None:
    """A round thing's footprint from the sides of its box the picture does not cut: the
    preferred ones, else any three, else all (a thing mostly out of the picture)."""
    for choice in (preferred, SIDE_NAMES):
        sides = [s for s in choice if s not in cut]
        if len(sides) >= 3:
            return disc(homography, box, sides)
    return disc(homography, box, SIDE_NAMES)


def _cut(box: Box, image: tuple[int, int], border: float) -> frozenset[str]:
    """The sides of a box the picture's border cuts (as `geometry.visible_sides` judges them)."""
    width, height = image
    named = (
        ("left", box[0] <= border),
        ("top", box[1] <= border),
        ("right", box[2] >= width - border),
        ("bottom", box[3] >= height - border),
    )
    return frozenset(name for name, cut in named if cut)


def plane_scene(
    detections: Sequence[Detection],
    image: tuple[int, int],
    calibration: Calibration,
    border: float,
) -> PlaneScene:
    """The detections' footprints in the plane frame (see the module's docstring); the
    calibration must have a homography."""
    homography = calibration.homography
    if homography is None:
        raise ValueError("measuring on the table plane needs a homography")
    footprints: list[tuple[Detection, Sides]] = []
    mug_boxes: list[Box] = []
    if calibration.table_cm is not None:  # the table top as measured stands for detected ones
        detections = [d for d in detections if d.role != "table"]
        footprints.append(
            (Detection("table", "table", 1.0, calibration.table_cm), calibration.table_cm)
        )
    for d in detections:
        cut = _cut(d.box, image, border)
        if d.role in ("mug", "coaster"):
            preferred = MUG_SIDES if d.role == "mug" else SIDE_NAMES
            found: Sides | None = _round(homography, d.box, cut, preferred)
        else:
            found = rectangle(homography, d.box, cut, image)
        if found is None:
            continue
        footprints.append((d, found))
        if d.role == "mug":
            mug_boxes.append(d.box)

    xs = [v for _, s in footprints for v in (s[0], s[2]) if v is not None]
    ys = [v for _, s in footprints for v in (s[1], s[3]) if v is not None]
    zones_cm = calibration.zones
    xs += [p[0] for polygon in zones_cm.values() for p in polygon]
    ys += [p[1] for polygon in zones_cm.values() for p in polygon]
    x0, y0 = min(xs, default=0.0) - MARGIN_CM, min(ys, default=0.0) - MARGIN_CM
    width = math.ceil((max(xs, default=0.0) + MARGIN_CM - x0) * PX_PER_CM)
    height = math.ceil((max(ys, default=0.0) + MARGIN_CM - y0) * PX_PER_CM)

    def frame(value: float | None, origin: float, missing: float) -> float:
        return missing if value is None else (value - origin) * PX_PER_CM

    boxes = [
        replace(
            d,
            box=(
                frame(s[0], x0, 0.0),
                frame(s[1], y0, 0.0),
                frame(s[2], x0, float(width)),
                frame(s[3], y0, float(height)),
            ),
        )
        for d, s in footprints
    ]
    zones = {
        name: tuple((frame(x, x0, 0.0), frame(y, y0, 0.0)) for x, y in polygon)
        for name, polygon in zones_cm.items()
    }
    return PlaneScene(tuple(boxes), (width, height), zones, tuple(mug_boxes))
