"""The camera both scene renderers share: a slight perspective tilt and, for the varied looks, a
lens's radial distortion, applied to the picture and to the labels alike, so a label boxes what
was drawn. Drawing (shapes, textures, light) is each renderer's own; this is geometry only."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.synth.scene import CLASSES, Circle, Rect, Scene


@dataclass(frozen=True, slots=True)
class Label:
    """One object as a box in output pixels (xyxy) with its class."""

    class_name: str
    box: tuple[float, float, float, float]

    def yolo(self, size: int) -> str:
        x0, y0, x1, y1 = self.box
        cx, cy, w, h = (
            (x0 + x1) / 2 / size,
            (y0 + y1) / 2 / size,
            (x1 - x0) / size,
            (y1 - y0) / size,
        )
        return f"{CLASSES.index(self.class_name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 matrix mapping the four `src` points onto the four `dst` points."""
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(rows, dtype=np.float64))
    matrix = vt[-1].reshape(3, 3)
    return matrix / matrix[2, 2]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.c_[points, np.ones(len(points))] @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def circle_points(circle: Circle, scale: float) -> np.ndarray:
    angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    return (
        np.c_[
            circle.cx + circle.radius * np.cos(angles), circle.cy + circle.radius * np.sin(angles)
        ]
        * scale
    )


def rect_points(rect: Rect, scale: float) -> np.ndarray:
    """A rectangle's four corners, clockwise from the top left."""
    return (
        np.array([[rect.x0, rect.y0], [rect.x1, rect.y0], [rect.x1, rect.y1], [rect.x0, rect.y1]])
        * scale
    )


def edge_points(rect: Rect, scale: float, per_edge: int = 16) -> np.ndarray:
    """Points along a rectangle's edges: under lens distortion its edges bow, and a box around
    its corners alone would cut the bulge off."""
    corners = rect_points(rect, scale)
    steps = np.linspace(0.0, 1.0, per_edge, endpoint=False)[:, None]
    return np.concatenate(
        [a + steps * (b - a) for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True)]
    )


def lens_sources(points: np.ndarray, size: int, k1: float) -> np.ndarray:
    """Where in the undistorted picture each point of the distorted one comes from: radial
    distortion, one coefficient, about the picture's centre, with the radius measured in half
    picture widths (k1 > 0 draws the middle larger than the edges: barrel; k1 < 0: pincushion)."""
    half = size / 2
    offset = points - half
    return half + offset * (1 + k1 * (offset**2).sum(axis=1, keepdims=True) / half**2)


def distort_points(points: np.ndarray, size: int, k1: float) -> np.ndarray:
    """Where the lens shows points of the undistorted picture: `lens_sources` inverted by
    fixed-point iteration. For the slight distortions drawn it converges within the picture
    (points beyond it may have no inverse: a pincushion lens never shows them)."""
    half = size / 2
    offset = points - half
    shown = offset.copy()
    for _ in range(40):
        shown = offset / (1 + k1 * (shown**2).sum(axis=1, keepdims=True) / half**2)
    result = half + shown
    if len(points) and np.abs(lens_sources(result, size, k1) - points).max() > 1e-6:
        raise ValueError("the lens shows no such point: keep points within the picture")
    return result


def distort(image: Image.Image, k1: float, fill: tuple[int, int, int]) -> Image.Image:
    """The picture through a lens with radial distortion `k1` (bilinear; `fill` where the lens
    looks beyond the picture)."""
    size = image.size[0]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres
    source = lens_sources(np.c_[xs.ravel(), ys.ravel()], size, k1) - 0.5
    sx, sy = source[:, 0], source[:, 1]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    padded = np.pad(np.asarray(image, dtype=np.float32), ((1, 2), (1, 2), (0, 0)))
    padded[0, :], padded[-2:, :], padded[:, 0], padded[:, -2:] = fill, fill, fill, fill
    beyond = (x0 < -1) | (x0 >= size) | (y0 < -1) | (y0 >= size)
    x0, y0 = np.clip(x0, -1, size) + 1, np.clip(y0, -1, size) + 1
    out = (
        padded[y0, x0] * (1 - fx) * (1 - fy)
        + padded[y0, x0 + 1] * fx * (1 - fy)
        + padded[y0 + 1, x0] * (1 - fx) * fy
        + padded[y0 + 1, x0 + 1] * fx * fy
    )
    out[beyond] = fill
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(size, size, 3))


def tilt(size: int, perspective: float, rng: random.Random) -> np.ndarray:
    """The homography moving each image corner by up to `perspective` of the size."""
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64)
    jitter = perspective * size
    moved = corners + np.array(
        [[rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter)] for _ in range(4)]
    )
    return homography(corners, moved)


def warp(
    image: Image.Image,
    forward: np.ndarray,
    resample: Image.Resampling,
    fill: tuple[int, int, int],
) -> Image.Image:
    backward = np.linalg.inv(forward)
    return image.transform(
        image.size,
        Image.Transform.PERSPECTIVE,
        tuple((backward / backward[2, 2]).flatten()[:8]),
        resample=resample,
        fillcolor=fill,
    )


@dataclass(frozen=True, slots=True)
class Shot:
    """A rendered picture with its labels, and the camera that took it: `forward` maps the
    top-down drawing's pixels (scene cm x px_per_cm) to the picture's."""

    image: Image.Image
    labels: list[Label]
    forward: np.ndarray
    lens: float = 0.0  # radial distortion after `forward` (camera.distort); 0 = none

    def table_corners(self, scene: Scene) -> list[tuple[float, float]]:
        """The table's corners in the picture (far-left, far-right, near-right, near-left),
        where a person would click them to calibrate; they may lie outside the picture."""
        size = self.image.size[0]
        mapped = project(rect_points(scene.table, scene.px_per_cm), self.forward, size, self.lens)
        return [(float(x), float(y)) for x, y in mapped]

    def mug_boxes(self, scene: Scene) -> list[tuple[float, float, float, float] | None]:
        """Each of the scene's mugs' label box, None for one the tilt pushes out of the picture:
        the pairing of ground truth and boxes that `labels` loses when it leaves one out."""
        size = self.image.size[0]
        found = [
            _label("mug", circle_points(m.body, scene.px_per_cm), self.forward, size, self.lens)
            for m in scene.mugs
        ]
        return [None if label is None else label.box for label in found]


def project(points: np.ndarray, forward: np.ndarray, size: int, lens: float) -> np.ndarray:
    """Drawing pixels to picture pixels: the tilt, then the lens."""
    mapped = apply(forward, points)
    return distort_points(mapped, size, lens) if lens else mapped


def _label(
    name: str, points: np.ndarray, forward: np.ndarray, size: int, lens: float = 0.0
) -> Label | None:
    # What the tilt leaves outside the picture is cut off before the lens: a barrel lens pulls the
    # picture's edge inwards, and a box must not reach into the empty strip it leaves.
    mapped = np.clip(apply(forward, points), 0, size)
    if lens:
        mapped = distort_points(mapped, size, lens)
    x0, y0 = np.clip(mapped.min(axis=0), 0, size)
    x1, y1 = np.clip(mapped.max(axis=0), 0, size)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return Label(name, (float(x0), float(y0), float(x1), float(y1)))


def scene_labels(scene: Scene, forward: np.ndarray, size: int, lens: float = 0.0) -> list[Label]:
    """Boxes of the table, mugs (their bodies), coasters and the device, through `forward` and
    the lens; objects the tilt pushes out of the picture are left out."""

    def label(name: str, points: np.ndarray) -> Label | None:
        return _label(name, points, forward, size, lens)

    scale = scene.px_per_cm
    # A tilt keeps edges straight, so corners bound a rectangle; a lens bows them.
    outline = edge_points if lens else rect_points
    candidates = [label("table", outline(scene.table, scale))]
    candidates += [label("mug", circle_points(m.body, scale)) for m in scene.mugs]
    candidates += [
        label(
            "coaster",
            circle_points(c.shape, scale) if not c.square else outline(c.shape.bounds(), scale),
        )
        for c in scene.coasters
    ]
    if scene.device is not None:
        candidates.append(label(scene.device.kind, outline(scene.device.rect, scale)))
    return [c for c in candidates if c is not None]
