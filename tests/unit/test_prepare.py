"""The preprocess stage hands inference exactly the pixels it would compute itself."""

from __future__ import annotations

import io

import numpy as np
import pytest

from core.imaging import ImageRejected
from core.models.letterbox import letterbox
from core.pipeline.prepare import model_input, prepare
from core.synth import render_scene, sample_scene


def test_round_trip_is_lossless_and_compact() -> None:
    image, _ = render_scene(sample_scene(3, 640), 640)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    prepared = prepare(buffer.getvalue(), 320)
    expected, _ = letterbox(prepared.image.pixels, 320)
    assert np.array_equal(model_input(prepared.model_input_png), expected)
    assert len(prepared.model_input_png) < 1_000_000  # fits a default Kafka message
    assert prepared.box.scale == pytest.approx(0.5)


def test_bad_input_is_rejected_not_crashed() -> None:
    with pytest.raises(ImageRejected):
        prepare(b"not an image", 320)
    with pytest.raises(ValueError, match="no decodable"):
        model_input(b"garbage")


def _jpeg(image, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def test_a_large_jpeg_is_decoded_no_larger_than_the_model_needs() -> None:
    scene, _ = render_scene(sample_scene(5, 1280), 1280)
    image = scene.resize((1280, 960))
    data = _jpeg(image)
    prepared = prepare(data, 320)
    full, full_box = letterbox(np.asarray(image.convert("RGB")), 320)
    # Reported as the original, decoded at a quarter: 320 x 240, what the letterbox keeps.
    assert (prepared.image.width, prepared.image.height) == (1280, 960)
    assert prepared.image.pixels.shape[:2] == (240, 320)
    assert prepared.box == full_box  # boxes map back to the original's pixels as before
    # DCT-domain scaling instead of a resize: the same picture within a few grey levels.
    difference = np.abs(prepared.pixels.astype(int) - full.astype(int))
    assert difference.mean() < 4, difference.mean()


def test_a_rotated_jpeg_keeps_its_oriented_size_when_decoded_small() -> None:
    scene, _ = render_scene(sample_scene(6, 1280), 1280)
    image = scene.resize((1280, 960))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    prepared = prepare(_jpeg(image, exif=exif), 320)
    assert (prepared.image.width, prepared.image.height) == (960, 1280)
    assert prepared.image.pixels.shape[:2] == (320, 240)
    assert prepared.box.scale == pytest.approx(0.25)


def test_pngs_and_small_jpegs_are_decoded_whole() -> None:
    scene, _ = render_scene(sample_scene(7, 640), 640)
    buffer = io.BytesIO()
    scene.save(buffer, format="PNG")
    assert prepare(buffer.getvalue(), 320).image.pixels.shape[:2] == (640, 640)
    # 640 into 640: nothing to skip.
    assert prepare(_jpeg(scene), 640).image.pixels.shape[:2] == (640, 640)
