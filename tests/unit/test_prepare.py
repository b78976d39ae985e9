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
