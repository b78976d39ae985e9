"""A camera's perspective calibration: the homography from image pixels to the table plane in cm.

An angled camera shows the far side of a table smaller than the near side, so one px-per-cm scale
is wrong everywhere but at one depth. Four points of the table plane whose real layout is known (a
sheet of paper, the table's corners) fix the mapping between the picture and the plane exactly, as
long as the four are a proper quadrilateral: refused otherwise, with the reason, since a calibration
that silently maps everything to nonsense would mislead every picture after it.

The plane's frame: x to the right and y towards the camera, as the picture shows them, so that the
plane's axes run along the sides of a table the four points were taken on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.positioning.geometry import Point

NAMES = "ABCD"
_SAME = 1e-3  # points closer than this share of the quadrilateral's size are one point
_FLAT = 1e-3  # a corner whose triangle is this flat (height / size) is on a line
BD_TOLERANCE = 0.02  # how far the checked diagonal may disagree with the one the others imply


def _quadrilateral(points: Sequence[Point], what: str) -> np.ndarray:
    """The four points as an array, refused unless they form a convex quadrilateral in order."""
    array = np.asarray(points, dtype=np.float64)
    if array.shape != (4, 2) or not np.isfinite(array).all():
        raise ValueError(f"{what}: need four points of two finite numbers each")
    size = float(np.ptp(array, axis=0).max())
    for i in range(4):
        for j in range(i + 1, 4):
            if math.dist(array[i], array[j]) <= _SAME * size:
                raise ValueError(f"{what}: {NAMES[i]} and {NAMES[j]} are the same point")
    turns = [_turn(array[i - 1], array[i], array[(i + 1) % 4]) for i in range(4)]
    for i, turn in enumerate(turns):
        base = max(math.dist(array[i - 1], array[(i + 1) % 4]), 1e-300)
        if abs(turn) / base <= _FLAT * size:  # the corner's height above its neighbours' line
            a, b, c = sorted(NAMES[(i + k) % 4] for k in (-1, 0, 1))
            raise ValueError(f"{what}: {a}, {b} and {c} lie on one line")
    negative = [NAMES[i] for i, turn in enumerate(turns) if turn < 0]
    if len(negative) == 2:
        raise ValueError(
            f"{what}: the quadrilateral ABCD crosses itself; give the points in order around it "
            "(clockwise as the picture shows them)"
        )
    if len(negative) in (1, 3):
        minority = negative if len(negative) == 1 else [n for n in NAMES if n not in negative]
        raise ValueError(
            f"{what}: the quadrilateral ABCD is not convex (it bends in at {minority[0]})"
        )
    return array


def _turn(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Twice the signed area of the triangle abc: positive when a-b-c turns clockwise on screen."""
    return float((b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]))


def _orientation(array: np.ndarray) -> float:
    return _turn(array[0], array[1], array[2])


@dataclass(frozen=True, slots=True)
class Homography:
    """3x3 matrix (row-major) taking image pixels to table-plane cm.

    Built by `from_points` it is scaled so that points in front of the camera have a positive
    homogeneous w; a point with w <= 0 lies on or beyond the plane's horizon and maps nowhere.
    `Homography(h.as_list())` round-trips through JSON."""

    matrix: tuple[tuple[float, float, float], ...]
    _forward: np.ndarray = field(init=False, repr=False, compare=False)
    _inverse: np.ndarray = field(init=False, repr=False, compare=False)

    def __init__(self, matrix: Sequence[Sequence[float]]) -> None:
        array = np.asarray(matrix, dtype=np.float64)
        if array.shape != (3, 3) or not np.isfinite(array).all():
            raise ValueError("a homography is a 3x3 matrix of finite numbers")
        if abs(np.linalg.det(array)) < 1e-12 * float(np.abs(array).max()) ** 3:
            raise ValueError("a homography must be invertible")
        object.__setattr__(self, "matrix", tuple(tuple(float(v) for v in row) for row in array))
        object.__setattr__(self, "_forward", array)
        object.__setattr__(self, "_inverse", np.linalg.inv(array))

    @classmethod
    def from_points(
        cls, image_points: Sequence[Point], plane_points: Sequence[Point]
    ) -> Homography:
        """The mapping taking each of the four image points to its plane point (cm). Both must
        be convex quadrilaterals in the same order around them (a mirrored order would be a
        camera under the table)."""
        image = _quadrilateral(image_points, "image points")
        plane = _quadrilateral(plane_points, "table points")
        if (_orientation(image) > 0) != (_orientation(plane) > 0):
            raise ValueError(
                "the table points go round the other way from the image points (a mirror image): "
                "list both in the same order, clockwise as the picture shows them"
            )
        rows, rhs = [], []
        for (x, y), (u, v) in zip(image, plane, strict=True):
            rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
            rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
            rhs += [u, v]
        solution = np.linalg.solve(np.asarray(rows), np.asarray(rhs))
        matrix = np.append(solution, 1.0).reshape(3, 3)
        # Points inside the calibrated quadrilateral are in front of the camera: w > 0 there.
        centre = image.mean(axis=0)
        if matrix[2] @ (centre[0], centre[1], 1.0) < 0:
            matrix = -matrix
        return cls(matrix)

    @classmethod
    def from_rectangle(
        cls, image_points: Sequence[Point], width_cm: float, depth_cm: float
    ) -> Homography:
        """Four image points of a rectangle (A far-left, B far-right, C near-right, D near-left)
        that is `width_cm` from A to B and `depth_cm` from B to C: A is the plane's origin."""
        if not (width_cm > 0 and depth_cm > 0 and math.isfinite(width_cm * depth_cm)):
            raise ValueError("a rectangle's width and depth must be positive numbers of cm")
        plane = [(0.0, 0.0), (width_cm, 0.0), (width_cm, depth_cm), (0.0, depth_cm)]
        return cls.from_points(image_points, plane)

    @classmethod
    def from_distances(
        cls, image_points: Sequence[Point], distances_cm: Mapping[str, float | None]
    ) -> Homography:
        """Four image points A, B, C, D (clockwise as the picture shows them) and the real
        distances between them: the sides `ab`, `bc`, `cd`, `da` and the diagonal `ac` fix the
        quadrilateral; the other diagonal `bd`, when given, checks the measurements (refused
        when it disagrees by more than 2 %). A is the plane's origin and B lies along its x axis."""
        return cls.from_points(image_points, plane_from_distances(distances_cm))

    def to_plane(self, point: Point) -> Point:
        """The image point (px) on the table plane (cm); ValueError beyond the horizon."""
        return _apply(self._forward, point, "image point")

    def to_image(self, point: Point) -> Point:
        """The table-plane point (cm) in the picture (px); ValueError behind the camera."""
        return _apply(self._inverse, point, "table point")

    def px_per_cm(self, point: Point) -> float:
        """The picture's scale at an image point (geometric mean over its two directions): an
        angled picture has no single one. For a homography the Jacobian's determinant (cm² per
        px²) is det(H) / w³."""
        self.to_plane(point)  # refuse a point beyond the horizon
        w = self._forward[2] @ (float(point[0]), float(point[1]), 1.0)
        return float(math.sqrt(w**3 / abs(np.linalg.det(self._forward))))

    @property
    def horizon(self) -> tuple[float, float, float]:
        """(a, b, c): image points with a·x + b·y + c > 0 are on the table plane, in front of the
        camera; the line where it is 0 is the plane's horizon, infinitely far away."""
        a, b, c = self._forward[2]
        return (float(a), float(b), float(c))

    def as_list(self) -> list[list[float]]:
        return [list(row) for row in self.matrix]


def _apply(matrix: np.ndarray, point: Point, what: str) -> Point:
    x, y, w = matrix @ (float(point[0]), float(point[1]), 1.0)
    if not w > 0:
        raise ValueError(f"{what} {tuple(point)} lies on or beyond the table plane's horizon")
    return (float(x / w), float(y / w))


def plane_from_distances(distances_cm: Mapping[str, float | None]) -> list[Point]:
    """A, B, C, D on the plane from their distances (see `Homography.from_distances`):
    A = (0, 0), B = (ab, 0), C towards the camera (y > 0), D on the other side of AC from B."""
    d: dict[str, float] = {}
    for name in ("ab", "bc", "cd", "da", "ac"):
        value = distances_cm.get(name)
        if value is None or not (math.isfinite(value) and value > 0):
            raise ValueError(f"distances: {name} must be a positive number of cm, not {value!r}")
        d[name] = float(value)
    _triangle("A, B and C", d["ab"], d["bc"], d["ac"])
    _triangle("A, C and D", d["ac"], d["cd"], d["da"])
    cx = (d["ab"] ** 2 + d["ac"] ** 2 - d["bc"] ** 2) / (2 * d["ab"])
    c = np.array([cx, math.sqrt(max(d["ac"] ** 2 - cx**2, 0.0))])
    along = c / d["ac"]
    across = np.array([-along[1], along[0]])  # towards the side of AC that B is not on
    t = (d["ac"] ** 2 + d["da"] ** 2 - d["cd"] ** 2) / (2 * d["ac"])
    point_d = along * t + across * math.sqrt(max(d["da"] ** 2 - t**2, 0.0))
    points = [(0.0, 0.0), (d["ab"], 0.0), (float(c[0]), float(c[1]))]
    points.append((float(point_d[0]), float(point_d[1])))
    measured = distances_cm.get("bd")
    if measured is not None:
        implied = math.dist(points[1], points[3])
        if not (math.isfinite(measured) and measured > 0):
            raise ValueError(f"distances: bd must be a positive number of cm, not {measured!r}")
        if abs(implied - measured) > BD_TOLERANCE * measured:
            raise ValueError(
                f"distances: BD is measured as {measured:g} cm but the other distances imply "
                f"{implied:.1f} cm ({abs(implied - measured) / measured:.1%} apart, more than "
                f"{BD_TOLERANCE:.0%}): re-measure"
            )
    try:
        _quadrilateral(points, "table points")
    except ValueError as exc:
        raise ValueError(f"distances: {str(exc).removeprefix('table points: ')}") from None
    return points


def _triangle(corners: str, a: float, b: float, c: float) -> None:
    """Refuse three distances that cannot be the sides of a triangle (or only a flat one)."""
    longest = max(a, b, c)
    if longest >= (a + b + c - longest) * (1 - 1e-9):
        raise ValueError(
            f"distances: {corners} cannot form a triangle with sides {a:g}, {b:g} and {c:g} cm "
            f"(the longest must be shorter than the other two together)"
        )
