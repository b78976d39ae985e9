"""Faces blurred out of the pictures the system keeps (MUGPOS_PRIVACY_BLUR=faces).

The detector is scikit-image's LBP frontal-face cascade, which ships inside its wheel: nothing is
downloaded, and OpenCV 5 no longer has a cascade classifier of its own. It looks at a grey copy
scaled down to DETECT_SIDE on its longer side (a face needs no more pixels to be found, and the
cascade's cost grows with the area), so faces smaller than about MIN_FACE / DETECT_SIDE of that
side are not looked for; like any cascade it finds frontal faces, not profiles. It errs towards
blurring: a false find costs a smudge on the table, a miss a recognisable person.

Everything here is in memory (bytes in, bytes out); the callers decide what is stored.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from core.imaging.decode import DecodedImage, ImageLimits, decode_image

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

DETECT_SIDE = 320  # px, the longer side of the grey copy the cascade looks at
MIN_FACE = 24  # px at DETECT_SIDE (7.5 % of the longer side): smaller faces are missed
PAD = 0.25  # of a found box's size on each side: the cascade's box is tight on eyes and mouth
BLOCKS = 6  # what is left of a face across its padded box: too few pixels to recognise anyone
# Pillow's writer and options per format: high-quality JPEG/WebP, lossless for the rest.
_WRITERS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpeg": ("JPEG", {"quality": 95}),
    "png": ("PNG", {}),
    "webp": ("WEBP", {"quality": 95}),
    "bmp": ("BMP", {}),
    "tiff": ("TIFF", {"compression": "tiff_deflate"}),
}
_local = threading.local()


@dataclass(frozen=True, slots=True)
class Concealed:
    """An original as it may be kept: `data` is the input itself when no face was found."""

    data: bytes
    regions: int  # faces blurred


def _cascade() -> Any:
    """One cascade per thread (pictures are checked on a pool; the cascade keeps no promise of
    thread safety), imported on first use: scikit-image costs ~0.3 s to import, which a process
    that never blurs should not pay."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade

        cascade = _local.cascade = Cascade(lbp_frontal_face_cascade_filename())
    return cascade


def find_faces(pixels: np.ndarray) -> list[Region]:
    """Boxes around the frontal faces in an RGB image, padded by PAD and clipped to it."""
    height, width = pixels.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    if min(grey.shape) < MIN_FACE:
        return []
    found = _cascade().detect_multi_scale(
        img=grey, scale_factor=1.2, step_ratio=1, min_size=(MIN_FACE, MIN_FACE), max_size=grey.shape
    )
    regions = []
    for face in found:
        pad_x, pad_y = face["width"] * PAD, face["height"] * PAD
        x0 = math.floor((face["c"] - pad_x) / scale)
        y0 = math.floor((face["r"] - pad_y) / scale)
        x1 = math.ceil((face["c"] + face["width"] + pad_x) / scale)
        y1 = math.ceil((face["r"] + face["height"] + pad_y) / scale)
        regions.append((max(0, x0), max(0, y0), min(width, x1), min(height, y1)))
    return regions


def blur_regions(pixels: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """A copy with each region reduced to about BLOCKS pixels across and smoothly enlarged back:
    no detail finer than a sixth of a face survives, and no block edges invite a de-pixelation."""
    out = pixels.copy()
    for x0, y0, x1, y1 in regions:
        w, h = x1 - x0, y1 - y0
        if w < 2 or h < 2:
            continue
        across = max(1, round(BLOCKS * min(w, h) / max(w, h)))
        small_size = (BLOCKS, across) if w >= h else (across, BLOCKS)
        small = cv2.resize(out[y0:y1, x0:x1], small_size, interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def blur_faces(pixels: np.ndarray) -> tuple[np.ndarray, list[Region]]:
    """The RGB image with its faces blurred (itself when none was found), and their regions."""
    regions = find_faces(pixels)
    return (blur_regions(pixels, regions) if regions else pixels), regions


def blur_original(data: bytes, limits: ImageLimits, seen: DecodedImage | None = None) -> Concealed:
    """An already validated image file with its faces blurred, re-encoded in its own format
    (upright, 8-bit RGB, without metadata); the bytes unchanged when no face is found.

    Faces are looked for in `seen` (`data` decoded, possibly at a reduced size: decode_image's
    `fit`), else in a JPEG decoded at the smallest scale the detector can use; the file is
    decoded in full only when there is a face to blur."""
    seen = seen or decode_image(data, limits, fit=DETECT_SIDE)
    regions = find_faces(seen.pixels)
    if not regions:
        return Concealed(data, 0)
    reduced = seen.pixels.shape[:2] != (seen.height, seen.width)
    full = decode_image(data, limits) if reduced else seen
    sx = full.width / seen.pixels.shape[1]
    sy = full.height / seen.pixels.shape[0]
    scaled = [
        (
            math.floor(x0 * sx),
            math.floor(y0 * sy),
            min(full.width, math.ceil(x1 * sx)),
            min(full.height, math.ceil(y1 * sy)),
        )
        for x0, y0, x1, y1 in regions
    ]
    writer, options = _WRITERS[full.format]
    out = io.BytesIO()
    Image.fromarray(blur_regions(full.pixels, scaled)).save(out, format=writer, **options)
    return Concealed(out.getvalue(), len(regions))
