"""Footprints on the table plane (cm): where a detected thing meets the table, from its box in an
angled picture.

A box is all a detector gives, and on an angled picture its corners are not the thing's corners:
the box bounds the thing's outline as the picture shows it. What survives the perspective is
tangency: each side of the box touches the outline, so each side, mapped to the plane, is a line
touching the footprint there. Footprints are found from those lines:

* round things (`disc`): the circle touching the chosen lines (least squares). For a flat disc (a
  coaster) all four sides touch it. A standing mug touches the table with its base: the box's bottom
  is the near rim of the base, and its left and right sides the outline, which a camera above the
  table sees widest near the base; the top is the far rim at the mug's height, above the plane, so
  it is left out;
* rectangles along the plane's axes (`rectangle`: tables, hazards): the rectangle whose outline in
  the picture, cut by the picture's border, has exactly the detected box. Sides the border cuts
  are unknown (None), and so is a side beyond the plane's horizon.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from core.positioning.geometry import Box, Point
from core.positioning.perspective import Homography

Sides = tuple[float | None, float | None, float | None, float | None]  # left, top, right, bottom
SIDE_NAMES = ("left", "top", "right", "bottom")
_FIT_PX = 0.05  # a rectangle fits when its outline's box is this close to the detected one
_FIT_STEPS = 30
_NUDGE_CM = 1e-4  # the step of the fit's finite differences
_FAR = 0.01  # the picture's far limit: w at this share of its nearest corner's


def _map(homography: Homography, point: Point) -> Point | None:
    try:
        return homography.to_plane(point)
    except ValueError:  # on or beyond the horizon
        return None


def _corners(box: Box) -> list[Point]:
    """tl, tr, br, bl"""
    x0, y0, x1, y1 = box
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def disc(homography: Homography, box: Box, sides: Sequence[str]) -> Box | None:
    """The plane box (cm) of the circle touching the named sides of the image box mapped to the
    plane; None when a side or the box's centre lies beyond the horizon."""
    tl, tr, br, bl = _corners(box)
    ends = {"left": (tl, bl), "top": (tl, tr), "right": (tr, br), "bottom": (bl, br)}
    inside = _map(homography, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    if inside is None:
        return None
    rows, offsets = [], []
    for side in sides:
        p, q = (_map(homography, end) for end in ends[side])
        if p is None or q is None:
            return None
        normal = np.array([p[1] - q[1], q[0] - p[0]])
        normal /= np.linalg.norm(normal)
        if normal @ np.subtract(inside, p) < 0:
            normal = -normal  # towards the thing
        rows.append([normal[0], normal[1], -1.0])  # distance from the line to the centre = r
        offsets.append(normal @ p)
    (cx, cy, r), *_ = np.linalg.lstsq(np.array(rows), np.array(offsets), rcond=None)
    r = abs(float(r))
    return (float(cx) - r, float(cy) - r, float(cx) + r, float(cy) + r)


def _inscribed(homography: Homography, box: Box) -> list[float | None] | None:
    """The axis-aligned rectangle inside the box's corners mapped to the plane (x from the larger
    left x to the smaller right x, y likewise): where the fit starts, and the answer when it
    cannot start. None when the box's near corners are beyond the horizon."""
    tl, tr, br, bl = (_map(homography, c) for c in _corners(box))
    if bl is None or br is None:
        return None

    def pick(
        corners: Sequence[Point | None], axis: int, best: Callable[[list[float]], float]
    ) -> float | None:
        known = [c[axis] for c in corners if c is not None]
        return best(known) if known else None

    left, right = pick((tl, bl), 0, max), pick((tr, br), 0, min)
    top, bottom = pick((tl, tr), 1, max), pick((bl, br), 1, min)
    # A quadrilateral too skewed to hold a rectangle (plane axes not along the picture's) gives
    # one of no size where it would be inside out.
    if left is not None and right is not None and left > right:
        left = right = (left + right) / 2
    if top is not None and bottom is not None and top > bottom:
        top = bottom = (top + bottom) / 2
    return [left, top, right, bottom]


def _cut_by(polygon: list[np.ndarray], keep: Callable[[np.ndarray], float]) -> list[np.ndarray]:
    """The convex `polygon` where `keep` (an affine function) is >= 0 (a Sutherland-Hodgman
    step)."""
    kept: list[np.ndarray] = []
    for p, q in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        kp, kq = keep(p), keep(q)
        if kp >= 0:
            kept.append(p)
        if (kp >= 0) != (kq >= 0):
            kept.append(p + (q - p) * (kp / (kp - kq)))
    return kept


def _clip(polygon: list[np.ndarray], window: list[np.ndarray]) -> list[np.ndarray]:
    """The convex `polygon` cut to the convex `window`."""
    centre = np.mean(window, axis=0)
    for a, b in zip(window, [*window[1:], window[0]], strict=True):
        inward = np.array([a[1] - b[1], b[0] - a[0]])
        if inward @ (centre - a) < 0:
            inward = -inward
        polygon = _cut_by(polygon, lambda p, a=a, inward=inward: float(inward @ (p - a)))
        if not polygon:
            break
    return polygon


def _window(homography: Homography, image: tuple[int, int]) -> list[np.ndarray] | None:
    """The picture on the plane (cm): its part in front of the horizon, up to where things are a
    hundred times further than the nearest corner (beyond, a pixel spans metres). None when the
    picture shows no plane."""
    a, b, c = homography.horizon
    picture = [np.array(p) for p in _corners((0.0, 0.0, float(image[0]), float(image[1])))]
    nearest = max(a * p[0] + b * p[1] + c for p in picture)
    if nearest <= 0:
        return None
    seen = _cut_by(picture, lambda p: a * p[0] + b * p[1] + c - _FAR * nearest)
    return [np.array(homography.to_plane((float(p[0]), float(p[1])))) for p in seen]


def rectangle(
    homography: Homography, box: Box, cut: frozenset[str], image: tuple[int, int]
) -> Sides | None:
    """The plane rectangle (cm) of a thing along the plane's axes whose outline the picture
    shows with this box; sides named in `cut` (the picture's border cuts them) are None. None
    when the box's near side is beyond the horizon."""
    start = _inscribed(homography, box)
    if start is None:
        return None
    window = _window(homography, image)
    known = [i for i, name in enumerate(SIDE_NAMES) if name not in cut]
    fitted = None
    if known and window is not None and all(start[i] is not None for i in known):
        fitted = _fit(homography, box, start, known, window)
    sides = fitted or start
    left, top, right, bottom = (None if n in cut else sides[i] for i, n in enumerate(SIDE_NAMES))
    return (left, top, right, bottom)


def _fit(
    homography: Homography,
    box: Box,
    start: list[float | None],
    known: list[int],
    window: list[np.ndarray],
) -> list[float] | None:
    """Newton's method on the rectangle's uncut sides until the box of its outline in the
    picture (cut by the picture's border: `window` is the picture on the plane) is the detected
    box, or as close as it gets; the cut sides lie beyond the picture. None when the start is
    no rectangle in the picture."""
    xs, ys = [p[0] for p in window], [p[1] for p in window]
    beyond = [min(xs) - 1.0, min(ys) - 1.0, max(xs) + 1.0, max(ys) + 1.0]
    sides = np.array([start[i] if i in known else beyond[i] for i in range(4)], dtype=float)
    target = np.array(box)[known]

    def residual(values: np.ndarray) -> np.ndarray | None:
        left, top, right, bottom = values
        if left >= right or top >= bottom:
            return None
        corners = [np.array(c) for c in _corners((left, top, right, bottom))]
        seen = _clip(corners, window)
        if len(seen) < 3:
            return None
        points = np.array([homography.to_image(tuple(p)) for p in seen])
        outline = np.r_[points.min(axis=0), points.max(axis=0)]
        return outline[known] - target

    current = residual(sides)
    if current is None:
        return None
    for _ in range(_FIT_STEPS):
        if np.abs(current).max() <= _FIT_PX:
            break
        jacobian = np.empty((len(known), len(known)))
        for column, i in enumerate(known):
            nudged = sides.copy()
            nudged[i] += _NUDGE_CM
            moved = residual(nudged)
            jacobian[:, column] = 0.0 if moved is None else (moved - current) / _NUDGE_CM
        step = np.linalg.lstsq(jacobian, -current, rcond=None)[0]
        for _ in range(8):  # halve a step that makes things worse
            trial = sides.copy()
            trial[known] += step
            after = residual(trial)
            if after is not None and np.abs(after).max() < np.abs(current).max():
                sides, current = trial, after
                break
            step /= 2
        else:
            break  # no step helps: as close as it gets
    return [float(v) for v in sides]
