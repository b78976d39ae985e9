"""The smallest move that satisfies a mug's failing constraints, with a sentence saying it.

Two candidates are compared: (a) stepping onto the nearest free coaster, and (b) pushing the mug
just far enough away from whatever it is too close to (edge, hazard, other mug) and into its zone,
repeated until nothing fails. The candidate that satisfies most constraints wins; ties go to the
shorter move.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from core.positioning.facts import Move
from core.positioning.geometry import centre, circle_box_gap, holder, polygon_margin, radius

if TYPE_CHECKING:
    from core.positioning.analysis import Measure, MugContext

ALL = ("edge", "hazard", "clearance", "coaster", "zone")
REASONS = {
    "edge": "clear the table edge",
    "hazard": "keep away from the {hazard}",
    "clearance": "leave room between mugs",
    "coaster": "stand on a coaster",
    "zone": "sit inside the placement zone",
}
_MARGIN_CM = 0.05  # aim just past each threshold, so rounding never leaves it failing


def _edge_push(ctx: MugContext, m: Measure, need: float) -> tuple[float, float]:
    table = holder(m.point, ctx.tables)
    if table is None:
        return 0.0, 0.0
    width, height = ctx.image
    border, r = ctx.config.image_border_px, radius(ctx.box)
    dx = dy = 0.0
    if table[0] > border and m.point[0] - table[0] - r < need:
        dx += need - (m.point[0] - table[0] - r)
    if table[2] < width - border and table[2] - m.point[0] - r < need:
        dx -= need - (table[2] - m.point[0] - r)
    if table[1] > border and m.point[1] - table[1] - r < need:
        dy += need - (m.point[1] - table[1] - r)
    if table[3] < height - border and table[3] - m.point[1] - r < need:
        dy -= need - (table[3] - m.point[1] - r)
    return dx, dy


def _pushes(ctx: MugContext, m: Measure, failing: tuple[str, ...]) -> tuple[float, float]:
    """One relaxation step: the sum of the minimal pushes for each failing distance constraint."""
    config, r = ctx.config, radius(ctx.box)
    margin = ctx.px(_MARGIN_CM) if ctx.scale else 1.0
    dx = dy = 0.0
    if "edge" in failing:
        ex, ey = _edge_push(ctx, m, ctx.px(config.min_edge_cm) + margin)
        dx, dy = dx + ex, dy + ey
    if "hazard" in failing:
        need = ctx.px(config.min_hazard_cm) + margin
        for hazard in ctx.hazards:
            gap, (ux, uy) = circle_box_gap(m.point, r, hazard.box)
            if gap < need:
                dx, dy = dx + ux * (need - gap), dy + uy * (need - gap)
    if "clearance" in failing:
        need = ctx.px(config.min_mug_clearance_cm) + margin
        for j, other in enumerate(ctx.mugs):
            if j == ctx.index:
                continue
            oc = centre(other.box)
            distance = math.dist(m.point, oc)
            gap = distance - r - radius(other.box)
            if gap < need:
                ux, uy = (
                    ((m.point[0] - oc[0]) / distance, (m.point[1] - oc[1]) / distance)
                    if distance > 1e-9
                    else (1.0, 0.0)
                )
                dx, dy = dx + ux * (need - gap), dy + uy * (need - gap)
    if "zone" in failing and ctx.zones:
        best = max(ctx.zones.values(), key=lambda p: polygon_margin(m.point, p)[0])
        inside, (ux, uy) = polygon_margin(m.point, best)
        need = r + margin - inside
        dx, dy = dx + ux * need, dy + uy * need
    return dx, dy


def _relax(ctx: MugContext) -> tuple[float, float]:
    dx = dy = 0.0
    for _ in range(25):
        moved = ctx.measure(dx, dy)
        failing = tuple(f for f in ctx.failing(moved) if f != "coaster")
        if not failing:
            break
        px, py = _pushes(ctx, moved, failing)
        if abs(px) < 1e-9 and abs(py) < 1e-9:
            break
        dx, dy = dx + px, dy + py
    return dx, dy


def _sentence(dx_cm: float, dy_cm: float, fixed: list[str], hazard: str | None, unit: str) -> str:
    parts = []
    if abs(dx_cm) >= 0.05:
        parts.append(f"{abs(dx_cm):.1f} {unit} {'right' if dx_cm > 0 else 'left'}")
    if abs(dy_cm) >= 0.05:
        parts.append(f"{abs(dy_cm):.1f} {unit} {'down' if dy_cm > 0 else 'up'}")
    reasons = [REASONS[f].format(hazard=hazard or "hazard") for f in fixed]
    why = " and ".join(reasons) if reasons else "improve its placement"
    return f"Move the mug {' and '.join(parts) or 'slightly'} to {why}."


def recommend(ctx: MugContext, m: Measure, failing: tuple[str, ...]) -> Move:
    candidates = [_relax(ctx)]
    if "coaster" in failing and ctx.coasters:
        target = min(ctx.coasters, key=lambda c: math.dist(m.point, centre(c)))
        cx, cy = centre(target)
        candidates.append((cx - m.point[0], cy - m.point[1]))

    def quality(move: tuple[float, float]) -> tuple[int, float]:
        still = ctx.failing(ctx.measure(*move))
        return (len(still), math.hypot(*move))

    dx, dy = min(candidates, key=quality)
    after = ctx.failing(ctx.measure(dx, dy))
    fixed = [f for f in failing if f not in after]
    if ctx.scale is not None:
        dx_out, dy_out, unit = dx / ctx.scale.px_per_cm, dy / ctx.scale.px_per_cm, "cm"
    else:
        dx_out, dy_out, unit = dx, dy, "px"
    text = _sentence(dx_out, dy_out, fixed, m.hazard_name, unit)
    if after:
        text += f" No single move also fixes: {', '.join(after)}."
    return Move(round(dx_out, 2), round(dy_out, 2), tuple(c for c in ALL if c not in after), text)
