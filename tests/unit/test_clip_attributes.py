"""CLIP attribute mechanics on randomly initialised weights (no pretrained weights exist here).

The scores of random weights mean nothing; what is tested is the machinery: refusing to run without
weights, probabilities per prompt set, text encoded once per set, batched == one by one.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.models.clip_attributes import DEFAULT_PROMPT_SETS, ClipAttributes, crop
from core.models.types import Detection


@pytest.fixture(scope="module")
def clip() -> ClipAttributes:
    return ClipAttributes("ViT-B-32", weights=None, allow_random_weights=True)


def test_refuses_without_weights_unless_told() -> None:
    with pytest.raises(ValueError, match="MUGPOS_CLIP_WEIGHTS"):
        ClipAttributes("ViT-B-32", weights=None)


def test_probabilities_per_prompt_set(clip: ClipAttributes) -> None:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (40 + 10 * i, 50, 3), dtype=np.uint8) for i in range(3)]
    scores = clip.score(crops)
    assert len(scores) == 3
    for result in scores:
        assert set(result) == set(DEFAULT_PROMPT_SETS)
        for name, labels in result.items():
            assert set(labels) == set(DEFAULT_PROMPT_SETS[name])
            assert sum(labels.values()) == pytest.approx(1.0, abs=1e-3)


def test_text_embeddings_are_computed_once_per_set(clip: ClipAttributes) -> None:
    crops = [np.zeros((32, 32, 3), dtype=np.uint8)]
    clip.score(crops)
    encoded = clip.text_encodings
    clip.score(crops)
    clip.score(crops * 4)
    assert encoded == len(DEFAULT_PROMPT_SETS)
    assert clip.text_encodings == encoded


def test_batched_equals_one_by_one(clip: ClipAttributes) -> None:
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
    batched = clip.score(crops)
    for crop_image, expected in zip(crops, batched, strict=True):
        single = clip.score([crop_image])[0]
        for name in expected:
            for label in expected[name]:
                assert single[name][label] == pytest.approx(expected[name][label], abs=1e-4)


def test_crop_grows_the_box_and_stays_inside_the_image() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    detection = Detection("mug", "mug", 0.9, (190.0, 10.0, 200.0, 30.0))
    piece = crop(image, detection, pad=0.5)
    assert piece.shape == (40, 15, 3)  # grown by half the box each way, clipped on the right
