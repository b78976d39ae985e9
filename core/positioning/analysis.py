"""From role-tagged detections to facts in centimetres, a quality score and the smallest fix.

Pure functions: no I/O, deterministic, the same facts for the same boxes.

Quality score (0-100): start at 100 and subtract
  * 25 when the mug is not on a coaster;
  * up to 35 for the table edge: 35 x deficit / min_edge (the full 35 when overhanging);
  * up to 25 for a hazard: 25 x deficit / min_hazard;
  * 10 when it is closer than min_mug_clearance to another mug (or overlaps it);
  * 15 when zones are configured and the mug is not fully inside one.
A coaster box that coincides with a mug's box (IoU >= 0.85 and no more than 3 % wider or taller)
is not evidence of a coaster but the detector seeing the mug twice: a coaster under a mug shows
around it, so its box is larger (the generator's smallest coaster under its largest mug: 3.3 %).
Such boxes are dropped before anything is measured (`SceneFacts.ignored_coasters` counts them).

Without a scale (no calibration and no reference objects) distances cannot be judged, so only the
coaster and zone terms apply. A model that cannot see coasters (no class maps to the role) leaves
`on_coaster` unknown and the coaster term out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from core.models.types import Detection
from core.positioning.facts import (
    Calibration,
    MugFacts,
    PositioningConfig,
    ScaleEstimate,
    SceneFacts,
)
from core.positioning.geometry import (
    Box,
    Point,
    centre,
    circle_box_gap,
    containment,
    contains,
    holder,
    iou,
    polygon_margin,
    radius,
    shift,
    visible_sides,
)
from core.positioning.perspective import Homography
from core.positioning.plane import PX_PER_CM, plane_scene
from core.positioning.recommend import recommend

EDGE, HAZARD, COASTER, CLEARANCE, ZONE = "edge", "hazard", "coaster", "clearance", "zone"
# A failing check in the few words a mug's caption uses: the annotated JPEG's (api.routes.analyze)
# and the console's, which loads them from the API (api.routes.console) rather than a copy.
CHECK_WORDS = {
    COASTER: "off coaster",
    EDGE: "near edge",
    HAZARD: "near hazard",
    CLEARANCE: "too close to a mug",
    ZONE: "outside zone",
}


def estimate_scale(
    detections: Sequence[Detection], calibration: Calibration | None, config: PositioningConfig
) -> ScaleEstimate | None:
    """px per cm: calibration when configured, else the median over reference objects of known size.

    Coasters (a standard size) count twice as much as mugs (which vary more)."""
    if calibration is not None and calibration.px_per_cm:
        return ScaleEstimate(calibration.px_per_cm, "calibration", 1.0, 0)
    coasters = [
        2 * radius(d.box) / config.coaster_diameter_cm for d in detections if d.role == "coaster"
    ]
    mugs = [2 * radius(d.box) / config.mug_diameter_cm for d in detections if d.role == "mug"]
    samples = coasters * 2 + mugs
    if not samples:
        return None
    value = statistics.median(samples)
    spread = (max(samples) - min(samples)) / value if len(samples) > 1 else 0.15
    base = 0.9 if coasters else 0.7
    references = len(coasters) + len(mugs)
    confidence = max(0.05, min(1.0, base - spread) * min(1.0, 0.5 + references / 6))
    source = "+".join(name for name, found in (("coaster", coasters), ("mug", mugs)) if found)
    return ScaleEstimate(round(value, 5), source, round(confidence, 3), references)


def edge_gap_px(
    point: tuple[float, float], r: float, table: Box, image: tuple[int, int], border: float
) -> float | None:
    """Clearance from a circle to the table's nearest *visible* edge (sides cut by the picture's
    border are not edges); negative when the circle overhangs. None if no side is visible."""
    sides = visible_sides(point, r, table, image, border)
    return min(sides)[0] if sides else None


def drop_mug_echoes(
    detections: Sequence[Detection], config: PositioningConfig
) -> tuple[list[Detection], int]:
    """(the detections without coaster boxes that are a mug seen twice, how many were dropped)."""
    mugs = [d.box for d in detections if d.role == "mug"]
    ratio = config.echo_size_ratio

    def echo(box: Box) -> bool:
        return any(
            iou(box, m) >= config.echo_iou
            and box[2] - box[0] <= ratio * (m[2] - m[0])
            and box[3] - box[1] <= ratio * (m[3] - m[1])
            for m in mugs
        )

    kept = [d for d in detections if d.role != "coaster" or not echo(d.box)]
    return kept, len(detections) - len(kept)


def analyze(
    detections: Sequence[Detection],
    image_size: tuple[int, int],
    calibration: Calibration | None = None,
    config: PositioningConfig | None = None,
    unseen: frozenset[str] = frozenset(),
) -> SceneFacts:
    """`unseen`: roles the model has no class for (ModelRef.roles says which it has).

    With a homography in the calibration, everything is measured on the table plane
    (core.positioning.plane): distances and moves are true cm along the plane's axes, while each
    mug's `box` stays its box in the picture; `scale` is then the picture's scale at its centre,
    for rules given in pixels."""
    config = config or PositioningConfig()
    detections, echoes = drop_mug_echoes(detections, config)
    if calibration is None or calibration.homography is None:
        scale = estimate_scale(detections, calibration, config)
        zones = calibration.zones if calibration else {}
        return _measure(detections, image_size, scale, zones, config, unseen, echoes)
    plane = plane_scene(detections, image_size, calibration, config.image_border_px)
    exact = ScaleEstimate(PX_PER_CM, "homography", 1.0, 0)
    facts = _measure(plane.detections, plane.size, exact, plane.zones, config, unseen, echoes)
    return replace(
        facts,
        scale=_picture_scale(calibration.homography, image_size),
        mugs=tuple(replace(m, box=plane.mug_boxes[m.index]) for m in facts.mugs),
        confidences=tuple(d.confidence for d in detections),
    )


def _picture_scale(homography: Homography, image: tuple[int, int]) -> ScaleEstimate | None:
    """The picture's scale at its centre; None when the centre shows no table plane (sky)."""
    try:
        px_per_cm = homography.px_per_cm((image[0] / 2, image[1] / 2))
    except ValueError:
        return None
    return ScaleEstimate(round(px_per_cm, 5), "homography", 1.0, 0)


def _measure(
    detections: Sequence[Detection],
    image_size: tuple[int, int],
    scale: ScaleEstimate | None,
    zones: dict[str, tuple[Point, ...]],
    config: PositioningConfig,
    unseen: frozenset[str],
    echoes: int,
) -> SceneFacts:
    """The facts of boxes in one frame with one scale: the picture's, or the table plane's."""
    sees_coasters = "coaster" not in unseen
    mugs = [d for d in detections if d.role == "mug"]
    coasters = [d for d in detections if d.role == "coaster"]
    tables = [d.box for d in detections if d.role == "table"]
    hazards = [d for d in detections if d.role == "hazard"]
    # Each coaster holds at most one mug: the one covering it most.
    pairs = sorted(
        (
            (containment(m.box, c.box), i, j)
            for i, m in enumerate(mugs)
            for j, c in enumerate(coasters)
        ),
        reverse=True,
    )
    coaster_of: dict[int, int] = {}
    used: set[int] = set()
    for share, i, j in pairs:
        if share >= config.on_coaster_containment and i not in coaster_of and j not in used:
            coaster_of[i] = j
            used.add(j)

    facts = []
    for i, mug in enumerate(mugs):
        context = MugContext(
            mug.box,
            i,
            mugs,
            coasters,
            tables,
            hazards,
            zones,
            image_size,
            scale,
            config,
            used,
            coaster_of.get(i),
            sees_coasters=sees_coasters,
        )
        facts.append(context.facts())
    per_table = [sum(1 for f in facts if holder(centre(f.box), tables) == t) for t in tables]
    return SceneFacts(
        scale=scale,
        mugs=tuple(facts),
        mug_count=len(mugs),
        tables=len(tables),
        mugs_per_table=tuple(per_table),
        coasters=len(coasters),
        unmatched_coasters=len(coasters) - len(used) if sees_coasters else None,
        hazards=len(hazards),
        confidences=tuple(d.confidence for d in detections),
        unseen=tuple(sorted(unseen)),
        ignored_coasters=echoes,
    )


@dataclass(frozen=True, slots=True)
class Measure:
    """One mug's measurements in pixels, at its detected or at a trial position."""

    point: Point
    edge: float | None
    inside: bool
    coaster_share: float
    coaster_box: Box | None
    hazard: float | None
    hazard_name: str | None
    nearest_mug: float | None
    zone_margin: float | None
    zone: str | None


class MugContext:
    """Everything needed to judge one mug, and to judge it again at a moved position."""

    def __init__(
        self,
        box: Box,
        index: int,
        mugs: list[Detection],
        coasters: list[Detection],
        tables: list[Box],
        hazards: list[Detection],
        zones: dict[str, tuple[Point, ...]],
        image: tuple[int, int],
        scale: ScaleEstimate | None,
        config: PositioningConfig,
        taken_coasters: set[int],
        own_coaster: int | None,
        *,
        sees_coasters: bool = True,
    ) -> None:
        self.box, self.index, self.mugs = box, index, mugs
        self.sees_coasters = sees_coasters
        self.tables, self.hazards, self.zones, self.image = tables, hazards, zones, image
        self.scale, self.config = scale, config
        self.any_coasters = bool(coasters)
        # Coasters this mug may stand on: free ones, and the one it already stands on.
        self.coasters = [
            c.box for j, c in enumerate(coasters) if j not in taken_coasters or j == own_coaster
        ]

    def cm(self, px: float | None) -> float | None:
        if px is None or self.scale is None:
            return None
        return round(px / self.scale.px_per_cm, 2)

    def px(self, cm: float) -> float:
        assert self.scale is not None
        return cm * self.scale.px_per_cm

    def measure(self, dx_px: float = 0.0, dy_px: float = 0.0) -> Measure:
        """The mug's measurements with its box moved by (dx, dy) pixels."""
        point = (centre(self.box)[0] + dx_px, centre(self.box)[1] + dy_px)
        r = radius(self.box)
        moved = shift(self.box, dx_px, dy_px)
        table = holder(point, self.tables)
        edge = (
            edge_gap_px(point, r, table, self.image, self.config.image_border_px) if table else None
        )
        inside = table is not None and contains(table, point)
        coaster = max(self.coasters, key=lambda c: containment(moved, c), default=None)
        hazard_gap, hazard_name = None, None
        for hazard in self.hazards:
            gap = circle_box_gap(point, r, hazard.box)[0]
            if hazard_gap is None or gap < hazard_gap:
                hazard_gap, hazard_name = gap, hazard.class_name
        others = [
            math.dist(point, centre(m.box)) - r - radius(m.box)
            for j, m in enumerate(self.mugs)
            if j != self.index
        ]
        zone_margin, zone = None, None
        for name, polygon in self.zones.items():
            margin = polygon_margin(point, polygon)[0] - r
            if zone_margin is None or margin > zone_margin:
                zone_margin, zone = margin, name
        return Measure(
            point,
            edge,
            inside,
            containment(moved, coaster) if coaster else 0.0,
            coaster,
            hazard_gap,
            hazard_name,
            min(others) if others else None,
            zone_margin,
            zone,
        )

    def hazard_distances(self, m: Measure) -> dict[str, float]:
        nearest: dict[str, float] = {}
        for hazard in self.hazards:
            gap = circle_box_gap(m.point, radius(self.box), hazard.box)[0]
            nearest[hazard.class_name] = min(gap, nearest.get(hazard.class_name, gap))
        return {name: value for name, gap in nearest.items() if (value := self.cm(gap)) is not None}

    def _below(self, px: float | None, minimum_cm: float) -> bool:
        value = self.cm(px)
        return value is not None and value < minimum_cm

    def failing(self, m: Measure) -> tuple[str, ...]:
        config = self.config
        checks = (
            (EDGE, self._below(m.edge, config.min_edge_cm)),
            (HAZARD, self._below(m.hazard, config.min_hazard_cm)),
            (CLEARANCE, self._below(m.nearest_mug, config.min_mug_clearance_cm)),
            (COASTER, self.sees_coasters and m.coaster_share < config.on_coaster_containment),
            (ZONE, bool(self.zones) and (m.zone_margin is None or m.zone_margin < 0)),
        )
        return tuple(name for name, failed in checks if failed)

    def score(self, m: Measure, failing: tuple[str, ...]) -> float:
        config = self.config
        score = 100.0 - (25 if COASTER in failing else 0) - (15 if ZONE in failing else 0)
        score -= 10 if CLEARANCE in failing else 0
        if EDGE in failing:
            deficit = config.min_edge_cm - (self.cm(m.edge) or 0.0)
            score -= 35 * min(1.0, deficit / config.min_edge_cm)
        if HAZARD in failing:
            deficit = config.min_hazard_cm - (self.cm(m.hazard) or 0.0)
            score -= 25 * min(1.0, deficit / config.min_hazard_cm)
        return round(max(0.0, score), 1)

    def facts(self) -> MugFacts:
        m = self.measure()
        failing = self.failing(m)
        on_coaster = COASTER not in failing if self.sees_coasters else None
        return MugFacts(
            index=self.index,
            box=self.box,
            confidence=self.mugs[self.index].confidence,
            diameter_cm=self.cm(2 * radius(self.box)),
            inside_table=m.inside,
            edge_distance_cm=self.cm(m.edge),
            on_coaster=on_coaster,
            coaster_containment=round(m.coaster_share, 3),
            coaster_offset_cm=self.cm(math.dist(m.point, centre(m.coaster_box)))
            if on_coaster and m.coaster_box
            else None,
            nearest_hazard=m.hazard_name,
            hazard_distance_cm=self.cm(m.hazard),
            hazard_distances_cm=self.hazard_distances(m),
            nearest_mug_cm=self.cm(m.nearest_mug),
            zone=m.zone if m.zone_margin is not None and m.zone_margin >= 0 else None,
            in_zone=None if not self.zones else ZONE not in failing,
            failing=failing,
            score=self.score(m, failing),
            recommendation=recommend(self, m, failing) if failing else None,
        )
