"""Plane geometry on axis-aligned boxes, circles and polygons, in whatever unit the caller uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

Box = tuple[float, float, float, float]
Point = tuple[float, float]


def centre(box: Box) -> Point:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def radius(box: Box) -> float:
    """A round object's radius from its box: the mean of half width and half height."""
    return ((box[2] - box[0]) + (box[3] - box[1])) / 4


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iou(a: Box, b: Box) -> float:
    shared = intersection(a, b)
    union = area(a) + area(b) - shared
    return shared / union if union else 0.0


def containment(inner: Box, outer: Box) -> float:
    """Share of `inner`'s area that lies inside `outer` (0..1)."""
    whole = area(inner)
    return intersection(inner, outer) / whole if whole else 0.0


def shift(box: Box, dx: float, dy: float) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def circle_box_gap(point: Point, r: float, box: Box) -> tuple[float, Point]:
    """Gap between a circle and a box (negative = overlapping) and the unit vector away from it."""
    nearest = (min(max(point[0], box[0]), box[2]), min(max(point[1], box[1]), box[3]))
    dx, dy = point[0] - nearest[0], point[1] - nearest[1]
    distance = math.hypot(dx, dy)
    if distance > 1e-9:
        return distance - r, (dx / distance, dy / distance)
    # Centre inside the box: leave through the closest side.
    exits = [
        (point[0] - box[0], (-1.0, 0.0)),
        (box[2] - point[0], (1.0, 0.0)),
        (point[1] - box[1], (0.0, -1.0)),
        (box[3] - point[1], (0.0, 1.0)),
    ]
    depth, direction = min(exits)
    return -depth - r, direction


# The way into a box from each of its sides, the sides named as the camera sees them.
INWARD: dict[str, Point] = {
    "left": (1.0, 0.0),
    "right": (-1.0, 0.0),
    "top": (0.0, 1.0),
    "bottom": (0.0, -1.0),
}


def visible_sides(
    point: Point, r: float, box: Box, image: tuple[int, int], border: float
) -> list[tuple[float, str]]:
    """(clearance from a circle inside `box` to a side, the side's name) for each side the
    picture shows: a side within `border` of the image's edge is where the picture is cut, not
    where the box ends. Negative clearance: the circle overhangs that side."""
    width, height = image
    sides = []
    if box[0] > border:
        sides.append((point[0] - box[0] - r, "left"))
    if box[2] < width - border:
        sides.append((box[2] - point[0] - r, "right"))
    if box[1] > border:
        sides.append((point[1] - box[1] - r, "top"))
    if box[3] < height - border:
        sides.append((box[3] - point[1] - r, "bottom"))
    return sides


def contains(box: Box, point: Point) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def holder(point: Point, boxes: Sequence[Box]) -> Box | None:
    """The box containing the point, else the nearest box (None when there are none)."""
    inside = [box for box in boxes if contains(box, point)]
    if inside:
        return inside[0]
    return min(boxes, key=lambda box: circle_box_gap(point, 0.0, box)[0], default=None)


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def nearest_on_segment(point: Point, a: Point, b: Point) -> Point:
    ax, ay = a
    bx, by = b
    length2 = (bx - ax) ** 2 + (by - ay) ** 2
    if length2 == 0:
        return a
    t = max(0.0, min(1.0, ((point[0] - ax) * (bx - ax) + (point[1] - ay) * (by - ay)) / length2))
    return (ax + t * (bx - ax), ay + t * (by - ay))


def polygon_margin(point: Point, polygon: Sequence[Point]) -> tuple[float, Point]:
    """Signed distance from the point to the polygon's boundary (positive inside), and the unit
    vector that increases it (pointing inwards)."""
    nearest = min(
        (
            nearest_on_segment(point, a, b)
            for a, b in zip(polygon, [*polygon[1:], polygon[0]], strict=True)
        ),
        key=lambda q: math.dist(q, point),
    )
    distance = math.dist(nearest, point)
    inside = point_in_polygon(point, polygon)
    if distance < 1e-9:
        cx = sum(p[0] for p in polygon) / len(polygon)
        cy = sum(p[1] for p in polygon) / len(polygon)
        norm = math.dist((cx, cy), point) or 1.0
        return 0.0, ((cx - point[0]) / norm, (cy - point[1]) / norm)
    away = ((point[0] - nearest[0]) / distance, (point[1] - nearest[1]) / distance)
    return (distance, away) if inside else (-distance, (-away[0], -away[1]))
