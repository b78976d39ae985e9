"""Preprocess stage: untrusted bytes -> a compact, model-ready image for the inference stage.

A fused worker passes the letterboxed pixels to the model in memory. Between split stages, the
stage topic carries the letterboxed image as lossless PNG (never raw float tensors), so the
inference stage sees exactly the pixels it would have computed itself, and batched results stay
identical to one-by-one results.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.imaging import DecodedImage, ImageLimits, decode_image
from core.models.letterbox import Letterbox, letterbox


@dataclass(frozen=True, slots=True)
class Prepared:
    image: DecodedImage
    box: Letterbox
    pixels: np.ndarray  # letterboxed RGB, what the model reads
    model_input_png: bytes = b""  # the same pixels for a stage topic; empty in a fused worker


def prepare(
    data: bytes, input_size: int, limits: ImageLimits | None = None, *, encode: bool = True
) -> Prepared:
    """Decode (no larger than the model needs) and validate (ImageRejected on bad input), then
    letterbox; with `encode`, also as lossless PNG for the stage topic (a fused worker hands the
    pixels on in memory)."""
    image = decode_image(data, limits, fit=input_size)
    boxed, info = letterbox(image.pixels, input_size, (image.width, image.height))
    if not encode:
        return Prepared(image, info, boxed)
    ok, encoded = cv2.imencode(
        ".png", cv2.cvtColor(boxed, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:  # pragma: no cover - OpenCV reports failure only for impossible inputs
        raise RuntimeError("PNG encoding of the model input failed")
    return Prepared(image, info, boxed, encoded.tobytes())


def model_input(png: bytes) -> np.ndarray:
    """The letterboxed RGB pixels back from the stage message."""
    decoded = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("stage message holds no decodable model input")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
