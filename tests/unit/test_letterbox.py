"""Letterboxing: a fixed input shape, and boxes mapped back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from core.models.letterbox import PAD_VALUE, letterbox, to_batch


@pytest.mark.parametrize(("height", "width"), [(480, 640), (640, 480), (320, 320), (100, 900)])
def test_shape_and_box_round_trip(height: int, width: int) -> None:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    boxed, info = letterbox(image, 320)
    assert boxed.shape == (320, 320, 3)
    original = np.array([[10.0, 20.0, width / 2, height / 2]])
    model_space = original * info.scale + [info.pad_x, info.pad_y, info.pad_x, info.pad_y]
    assert np.allclose(info.to_original(model_space), original, atol=1e-9)


def test_padding_is_grey_and_boxes_are_clipped() -> None:
    boxed, info = letterbox(np.zeros((100, 200, 3), dtype=np.uint8), 64)
    assert boxed[0, 0].tolist() == [PAD_VALUE] * 3
    clipped = info.to_original(np.array([[-50.0, -50.0, 500.0, 500.0]]))
    assert clipped.tolist() == [[0.0, 0.0, 200.0, 100.0]]


def test_batch_is_nchw_float_in_unit_range() -> None:
    batch = to_batch([np.full((32, 32, 3), 255, np.uint8), np.zeros((32, 32, 3), np.uint8)])
    assert batch.shape == (2, 3, 32, 32)
    assert batch.dtype == np.float32
    assert (batch.max(), batch.min()) == (1.0, 0.0)
