"""The smallest move that satisfies a mug's failing constraints, and advice a person can act on.

Candidates: staying put; pushing the mug just far enough away from whatever it is too close to
(edge, hazard, other mug) and into its zone, repeated until nothing fails; when that does not
settle (pushes from opposite sides cancel), the nearest spot on its table where no distance check
fails; and stepping onto the nearest free coaster. The candidate leaving fewest checks failing
wins; ties go to the shorter move. A mug standing on a coaster is moved together with it.

The advice names the action and its numbers (how far, which way, how things stand now), as the
camera sees the picture; what no move fixes gets what to do instead. Never a zero move.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from core.positioning.facts import Move
from core.positioning.geometry import (
    INWARD,
    centre,
    circle_box_gap,
    holder,
    polygon_margin,
    radius,
    visible_sides,
)

if TYPE_CHECKING:
    from core.positioning.analysis import Measure, MugContext

ALL = ("edge", "hazard", "clearance", "coaster", "zone")
_MARGIN_CM = 0.05  # aim just past each threshold, so rounding never leaves it failing


def _edge_push(ctx: MugContext, m: Measure, need: float) -> tuple[float, float]:
    dx = dy = 0.0
    for gap, side in _sides(ctx, m):
        if gap < need:
            ux, uy = INWARD[side]
            dx, dy = dx + ux * (need - gap), dy + uy * (need - gap)
    return dx, dy


def _sides(ctx: MugContext, m: Measure) -> list[tuple[float, str]]:
    """The visible sides of the table holding the mug (none without one), with clearances."""
    table = holder(m.point, ctx.tables)
    if table is None:
        return []
    return visible_sides(m.point, radius(ctx.box), table, ctx.image, ctx.config.image_border_px)


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


_GRID_STEPS = 80  # spots per table side searched when pushing away does not settle


def _search(ctx: MugContext) -> tuple[float, float] | None:
    """The nearest spot on the mug's table (on a grid) where no distance or zone check fails:
    for mugs hemmed in from opposite sides (an edge and a laptop), where pushes cancel out."""
    cx, cy = centre(ctx.box)
    area = holder((cx, cy), ctx.tables) or (0.0, 0.0, float(ctx.image[0]), float(ctx.image[1]))
    step = max(area[2] - area[0], area[3] - area[1]) / _GRID_STEPS
    xs = [area[0] + step * (i + 0.5) for i in range(int((area[2] - area[0]) / step))]
    ys = [area[1] + step * (j + 0.5) for j in range(int((area[3] - area[1]) / step))]
    spots = sorted(((x - cx, y - cy) for x in xs for y in ys), key=lambda d: math.hypot(*d))
    for dx, dy in spots:
        if not [f for f in ctx.failing(ctx.measure(dx, dy)) if f != "coaster"]:
            return dx, dy
    return None


def _amount(value: float, unit: str, *, up: bool = False) -> str:
    """A distance as a person reads it: whole units from 2 up, one decimal below, never 0;
    `up` rounds up (a move shown shorter than needed would not fix anything)."""
    value = abs(value)
    if unit == "px":
        return f"{max(math.ceil(value) if up else value, 1):.0f} px"
    if value >= 2:
        return f"{math.ceil(value - 1e-9) if up else value:.0f} cm"
    value = math.ceil(value * 10 - 1e-9) / 10 if up else value
    return f"{max(value, 0.1):.1f}".rstrip("0").rstrip(".") + " cm"


def _nearest_edge(ctx: MugContext, m: Measure) -> tuple[float, str] | None:
    """(clearance in px, side) of the nearest visible edge of the table holding the mug."""
    return min(_sides(ctx, m), default=None)


def _gap(ctx: MugContext, px: float | None, unit: str) -> str:
    value = px if unit == "px" or px is None else px / ctx.scale.px_per_cm  # type: ignore[union-attr]
    return "overlapping it" if value is None or value < 0 else f"{_amount(value, unit)} from it"


def _purposes(
    ctx: MugContext, m: Measure, fixed: list[str], onto_coaster: bool, unit: str
) -> list[str]:
    """What the move achieves, with today's numbers, in the order of ALL."""
    scale = ctx.scale.px_per_cm if ctx.scale and unit == "cm" else 1.0
    said = ["onto the free coaster"] if onto_coaster else []
    for check in ALL:
        if check not in fixed:
            continue
        if check == "edge" and (edge := _nearest_edge(ctx, m)) is not None:
            gap, side = edge
            if gap < 0:
                said.append(
                    f"back onto the table (now {_amount(gap / scale, unit)} over the {side} edge)"
                )
            else:
                now = _amount(gap / scale, unit)
                said.append(f"toward the table centre (now {now} from the {side} edge)")
        elif check == "hazard":
            said.append(
                f"away from the {m.hazard_name or 'hazard'} (now {_gap(ctx, m.hazard, unit)})"
            )
        elif check == "clearance":
            said.append(f"away from the other mug (now {_gap(ctx, m.nearest_mug, unit)})")
        elif check == "zone":
            said.append("into the placement zone")
    return said


def _still(ctx: MugContext, m: Measure, after: tuple[str, ...], moved: bool) -> list[str]:
    """What no single move fixes, each with what a person can do instead."""
    config = ctx.config
    said = []
    for check in ALL:
        if check not in after:
            continue
        if check == "coaster":
            if not ctx.any_coasters:
                said.append("No coaster in view: put one under this mug.")
            elif not ctx.coasters:
                said.append("No free coaster in view: put one under this mug.")
            else:
                said.append(
                    f"{'Then put' if moved else 'Put'} a coaster under it: the free coaster "
                    "stands where the other checks fail."
                )
        elif check == "edge":
            said.append(
                f"No spot on this table is {_amount(config.min_edge_cm, 'cm')} from every "
                "edge: use a larger table."
            )
        elif check == "hazard":
            said.append(
                f"No spot on this table is {_amount(config.min_hazard_cm, 'cm')} from the "
                f"{m.hazard_name or 'hazard'}: move the {m.hazard_name or 'hazard'} away."
            )
        elif check == "clearance":
            said.append("There is no room beside the other mug: move one of them elsewhere.")
        elif check == "zone":
            said.append("No spot inside the placement zone is free: clear the zone.")
    return said


def _direction(dx: float, dy: float, unit: str) -> str:
    least = 0.5 if unit == "px" else 0.05
    parts = [
        f"{_amount(value, unit, up=True)} {positive if value > 0 else negative}"
        for value, positive, negative in ((dx, "right", "left"), (dy, "down", "up"))
        if abs(value) >= least
    ]
    return " and ".join(parts)


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def recommend(ctx: MugContext, m: Measure, failing: tuple[str, ...]) -> Move:
    """The move, and a sentence naming the action and its numbers: how far and which way, what
    it fixes and how things stand now; for what no move fixes, what to do instead."""
    # A mug on a coaster is moved together with it: its coaster cannot be left behind.
    carried = "coaster" not in failing and ctx.sees_coasters

    def still(move: tuple[float, float]) -> tuple[str, ...]:
        after = ctx.failing(ctx.measure(*move))
        return tuple(f for f in after if f != "coaster") if carried else after

    relaxed = _relax(ctx)
    candidates = [(0.0, 0.0), relaxed]  # staying put wins over a move that fixes no more
    if [f for f in still(relaxed) if f != "coaster"]:
        candidates += [spot] if (spot := _search(ctx)) is not None else []
    onto: tuple[float, float] | None = None
    if "coaster" in failing and ctx.coasters:
        target = min(ctx.coasters, key=lambda c: math.dist(m.point, centre(c)))
        onto = (centre(target)[0] - m.point[0], centre(target)[1] - m.point[1])
        candidates.append(onto)
    dx, dy = min(candidates, key=lambda move: (len(still(move)), math.hypot(*move)))
    after = still((dx, dy))
    fixed = [f for f in failing if f not in after]
    if ctx.scale is not None:
        dx_out, dy_out, unit = dx / ctx.scale.px_per_cm, dy / ctx.scale.px_per_cm, "cm"
    else:
        dx_out, dy_out, unit = dx, dy, "px"
    direction = _direction(dx_out, dy_out, unit)
    sentences = []
    if direction and fixed:
        purposes = _purposes(ctx, m, fixed, (dx, dy) == onto and "coaster" in fixed, unit)
        what = "it and its coaster" if carried and m.coaster_box is not None else "it"
        sentences.append(f"Move {what} {direction} {_listed(purposes)}.")
    else:
        dx_out = dy_out = 0.0  # a move that fixes nothing is no advice
    sentences += _still(ctx, m, after, bool(sentences))
    return Move(
        round(dx_out, 2),
        round(dy_out, 2),
        tuple(c for c in ALL if c not in after),
        " ".join(sentences),
    )
