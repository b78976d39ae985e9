"""What the positioning analysis reports: scale, per-mug facts, scene facts, recommendations."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.positioning.geometry import Box, Point
from core.positioning.perspective import Homography


@dataclass(frozen=True, slots=True)
class Calibration:
    """Per-source setup: how the picture maps to cm, and named placement zones.

    `px_per_cm` is one scale for a camera looking straight down; `homography` maps an angled
    camera's picture onto the table plane, and wins over `px_per_cm` when both are set. `zones`
    are polygons in the frame the analysis measures in: image pixels, or table-plane cm when
    `homography` is set (the caller converts them; the source setup does).

    `table_cm` (with a homography only): the table top on the plane (x0, y0, x1, y1 in cm), for
    a fixed camera calibrated on the table's own corners (`Homography.from_rectangle` puts it at
    (0, 0, width, depth)). It replaces the detected table boxes: a box says little about a table
    seen at an angle, and all four measured sides are edges, even where the picture cuts them."""

    px_per_cm: float | None = None
    zones: dict[str, tuple[Point, ...]] = field(default_factory=dict)
    homography: Homography | None = None
    table_cm: Box | None = None

    def __post_init__(self) -> None:
        if self.table_cm is not None:
            x0, y0, x1, y1 = self.table_cm
            if self.homography is None:
                raise ValueError("a table top in cm needs a homography to find it in the picture")
            if not (x0 < x1 and y0 < y1):
                raise ValueError(f"table top {self.table_cm}: need x0 < x1 and y0 < y1")


@dataclass(frozen=True, slots=True)
class PositioningConfig:
    coaster_diameter_cm: float = 10.0
    mug_diameter_cm: float = 8.5
    min_edge_cm: float = 5.0
    min_hazard_cm: float = 10.0
    min_mug_clearance_cm: float = 2.0
    on_coaster_containment: float = 0.6  # share of the mug's box over the coaster's
    image_border_px: float = 2.0  # a table side this close to the image border is not an edge
    # A coaster box this much like a mug's box is the mug seen twice (analysis.drop_mug_echoes).
    echo_iou: float = 0.85
    echo_size_ratio: float = 1.03  # a real coaster shows around its mug: wider by more than this


@dataclass(frozen=True, slots=True)
class ScaleEstimate:
    px_per_cm: float
    # calibration | coaster | mug | coaster+mug | homography (then px_per_cm is the picture's
    # scale at its centre: an angled picture has no single one)
    source: str
    confidence: float  # 0..1
    references: int


@dataclass(frozen=True, slots=True)
class Move:
    # With a homography: along the table plane's axes (x right, y towards the camera).
    dx_cm: float  # + = right in the image
    dy_cm: float  # + = down in the image
    satisfies: tuple[str, ...]  # constraints that hold after the move
    text: str

    @property
    def distance_cm(self) -> float:
        return (self.dx_cm**2 + self.dy_cm**2) ** 0.5


@dataclass(frozen=True, slots=True)
class MugFacts:
    index: int
    box: Box
    confidence: float
    diameter_cm: float | None
    inside_table: bool
    edge_distance_cm: float | None  # clearance to the nearest visible table edge; < 0 overhangs
    on_coaster: bool | None  # None: the model cannot see coasters
    coaster_containment: float
    coaster_offset_cm: float | None
    nearest_hazard: str | None
    hazard_distance_cm: float | None
    hazard_distances_cm: dict[str, float]  # nearest of each hazard class
    nearest_mug_cm: float | None  # clearance to the closest other mug; < 0 overlaps
    zone: str | None  # the zone the mug lies fully inside, if any
    in_zone: bool | None  # None when the source has no zones
    failing: tuple[str, ...]
    score: float
    recommendation: Move | None
    handle: str | None = None  # handle direction when an attribute model reports one


@dataclass(frozen=True, slots=True)
class SceneFacts:
    scale: ScaleEstimate | None
    mugs: tuple[MugFacts, ...]
    mug_count: int
    tables: int
    mugs_per_table: tuple[int, ...]
    coasters: int
    unmatched_coasters: int | None  # None: the model cannot see coasters
    hazards: int
    confidences: tuple[float, ...]  # every detection's, for review rules
    # Roles (core.models.class_map.ROLES) the model has no class for: facts about them are
    # unknown, never "none there", so rules about them are not applicable rather than passed.
    unseen: tuple[str, ...] = ()
    ignored_coasters: int = 0  # coaster boxes that were the mug seen twice (drop_mug_echoes)
