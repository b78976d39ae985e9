"""Faces blurred out of kept originals (core.imaging.privacy), on real photos bundled in a wheel."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.imaging import ImageLimits, decode_image
from core.imaging.privacy import Region, blur_faces, blur_original, find_faces
from core.synth.render import scene_jpegs

# The astronaut's face (x0, y0, x1, y1), as drawn by hand on skimage.data.astronaut().
FACE = (190, 85, 250, 160)
# Far from it: the flag and the suit's left side, bottom left.
FAR = (0, 330, 150, 512)


def _crop(pixels: np.ndarray, box: Region) -> np.ndarray:
    x0, y0, x1, y1 = box
    return pixels[y0:y1, x0:x1].astype(np.int16)


def _detail(pixels: np.ndarray) -> float:
    """How much fine structure (edges: eyes, mouth) there is: the Laplacian's variance."""
    grey = cv2.cvtColor(pixels.astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _encoded(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


def _pixels(encoded: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray, list[Region]]:
    original = data.astronaut()
    blurred, regions = blur_faces(original)
    return original, blurred, regions


def test_the_face_is_found_and_blurred_beyond_recognition(astronaut) -> None:
    original, blurred, regions = astronaut
    x0, y0, x1, y1 = FACE
    assert any(r[0] <= x0 and r[1] <= y0 and r[2] >= x1 and r[3] >= y1 for r in regions), regions
    before, after = _crop(original, FACE), _crop(blurred, FACE)
    assert np.abs(after - before).mean() > 10
    assert _detail(after) < _detail(before) / 20  # eyes, nose and mouth are gone
    assert not any(r[0] < x1 and r[2] > x0 and r[1] < y1 and r[3] > y0 for r in find_faces(blurred))


def test_pixels_away_from_faces_stay_identical(astronaut) -> None:
    original, blurred, regions = astronaut
    assert np.array_equal(_crop(blurred, FAR), _crop(original, FAR))
    outside = np.ones(original.shape[:2], dtype=bool)
    for x0, y0, x1, y1 in regions:
        outside[y0:y1, x0:x1] = False
    assert np.array_equal(blurred[outside], original[outside])


def test_a_picture_without_faces_is_unchanged() -> None:
    (jpeg,) = scene_jpegs(1, 1, 480)
    pixels = _pixels(jpeg)
    blurred, regions = blur_faces(pixels)
    assert regions == []
    assert np.array_equal(blurred, pixels)
    kept = blur_original(jpeg, ImageLimits())
    assert (kept.data, kept.regions) == (jpeg, 0)  # stored as received, not re-encoded


@pytest.mark.parametrize(("fmt", "kind"), [("JPEG", b"\xff\xd8\xff"), ("PNG", b"\x89PNG")])
def test_an_original_is_blurred_in_its_own_format(fmt: str, kind: bytes) -> None:
    original = data.astronaut()
    encoded = _encoded(original, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    kept = blur_original(encoded, ImageLimits())
    assert kept.data.startswith(kind)
    assert kept.regions >= 1
    stored = _pixels(kept.data)
    assert stored.shape == original.shape
    assert np.abs(_crop(stored, FACE) - _crop(original, FACE)).mean() > 10
    far = np.abs(_crop(stored, FAR) - _crop(_pixels(encoded), FAR))
    assert far.max() == 0 if fmt == "PNG" else far.mean() < 2  # JPEG: re-encoded at quality 95


def test_faces_found_at_a_reduced_size_are_blurred_at_full_size() -> None:
    """The worker looks in the pixels it decoded for the model (a JPEG at a reduced DCT scale);
    the file is then decoded in full and blurred where the face is at that size."""
    big = cv2.resize(data.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    encoded = _encoded(big, "JPEG", quality=92)
    seen = decode_image(encoded, ImageLimits(), fit=320)
    assert seen.pixels.shape[0] < 1536
    kept = blur_original(encoded, ImageLimits(), seen)
    stored = _pixels(kept.data)
    assert stored.shape == big.shape
    assert kept.regions >= 1
    face = tuple(3 * v for v in FACE)
    assert np.abs(_crop(stored, face) - _crop(big, face)).mean() > 10
    assert _detail(_crop(stored, face)) < _detail(_crop(big, face)) / 10  # smoother when enlarged
    far = tuple(3 * v for v in FAR)
    assert np.abs(_crop(stored, far) - _crop(big, far)).mean() < 2
