"""A source's settings made ready for the analysis: its calibration (with zones in the frame the
analysis measures in), which rules apply, and which model serves it.

Built once per source version and cached with it; `source_setup` is also run when a source is
written, so that a calibration the analysis cannot use (four points on one line, distances that
cannot form the quadrilateral) is refused then, not met by every image later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.positioning import Calibration
from core.positioning.geometry import Point
from core.positioning.perspective import Homography
from core.rules import CompiledRule
from core.sources.spec import FourPointCalibration, RuleTags, ScaleCalibration, SourceSpec, Zone


class SourceSetupError(ValueError):
    """A source whose calibration or zones cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class SourceSetup:
    source_id: str
    version: int | None  # None: the source has no document (defaults apply)
    calibration: Calibration | None
    rule_tags: frozenset[str] | None  # None: every rule applies
    model: str | None  # None: the worker's model
    webhooks: tuple[str, ...] = ()  # endpoints of every alert raised on the source
    max_age_s: float | None = None  # older frames expire unanalysed

    def rules(self, rules: Sequence[CompiledRule]) -> tuple[CompiledRule, ...]:
        """The rules of the active set that apply to this source."""
        if self.rule_tags is None:
            return tuple(rules)
        return tuple(r for r in rules if self.rule_tags & set(r.spec.tags))


def default_setup(source_id: str) -> SourceSetup:
    """A source nobody described: guessed scale, every rule, the worker's model."""
    return SourceSetup(source_id, None, None, None, None)


def _homography(calibration: FourPointCalibration) -> Homography:
    points = [tuple(p) for p in calibration.image_points]
    if calibration.rectangle_cm is not None:
        width, depth = calibration.rectangle_cm
        return Homography.from_rectangle(points, width, depth)
    assert calibration.distances_cm is not None
    return Homography.from_distances(points, calibration.distances_cm.model_dump())


def _zone(
    name: str, zone: Zone, homography: Homography | None, px_per_cm: float | None
) -> tuple[Point, ...]:
    """The zone's polygon in the frame the analysis measures in: table cm with a homography,
    image px otherwise."""
    points = [(float(x), float(y)) for x, y in zone.polygon]
    if homography is not None:
        if zone.unit == "px":
            try:
                points = [homography.to_plane(p) for p in points]
            except ValueError:
                raise SourceSetupError(
                    f"zone {name!r}: a corner lies beyond the table plane the calibration spans"
                ) from None
        return tuple(points)
    if zone.unit == "px":
        return tuple(points)
    if px_per_cm is None:
        raise SourceSetupError(
            f"zone {name!r} is in cm, which needs a calibration to place it on the picture; "
            "give one, or the zone in px"
        )
    return tuple((x * px_per_cm, y * px_per_cm) for x, y in points)


def _table(spec: SourceSpec) -> tuple[float, float, float, float] | None:
    """The table top on the plane, when the four calibration points are its corners."""
    calibration = spec.calibration
    if not isinstance(calibration, FourPointCalibration) or not calibration.table_top:
        return None
    if calibration.rectangle_cm is None:
        raise SourceSetupError("calibration: table_top needs the table's size as rectangle_cm")
    width, depth = calibration.rectangle_cm
    return (0.0, 0.0, width, depth)


def source_setup(source_id: str, version: int, spec: SourceSpec) -> SourceSetup:
    """Raises SourceSetupError for a calibration that cannot be used."""
    homography, px_per_cm = None, None
    if isinstance(spec.calibration, FourPointCalibration):
        try:
            homography = _homography(spec.calibration)
        except ValueError as exc:
            raise SourceSetupError(f"calibration: {exc}") from None
    elif isinstance(spec.calibration, ScaleCalibration):
        px_per_cm = spec.calibration.px_per_cm
    calibration = None
    if spec.calibration is not None or spec.zones:
        zones = {name: _zone(name, z, homography, px_per_cm) for name, z in spec.zones.items()}
        calibration = Calibration(
            px_per_cm=px_per_cm, zones=zones, homography=homography, table_cm=_table(spec)
        )
    tags = frozenset(spec.rules.tags) if isinstance(spec.rules, RuleTags) else None
    return SourceSetup(
        source_id,
        version,
        calibration,
        tags,
        spec.model,
        tuple(spec.webhooks),
        spec.max_age_s,
    )
