"""Fit any image into the model's fixed square input, and map boxes back to the original image.

Every image of a batch gets the same shape this way, which is what makes batched results identical
to one-by-one results.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # the grey ultralytics pads with, so trained weights see what they expect


@dataclass(frozen=True, slots=True)
class Letterbox:
    scale: float
    pad_x: int
    pad_y: int
    width: int  # original image size
    height: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) xyxy in model-input pixels -> original-image pixels, clipped to the image."""
        out = boxes.astype(np.float64, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def letterbox(
    image: np.ndarray, size: int, original: tuple[int, int] | None = None
) -> tuple[np.ndarray, Letterbox]:
    """An RGB uint8 (H, W, 3) image resized to fit `size`x`size`, centred on grey padding.

    `original` (width, height): the size of the image these pixels show, when they were decoded
    smaller (core.imaging.decode_image's `fit`); the letterbox is laid out for it, so boxes map
    back to the original's pixels."""
    width, height = original or (image.shape[1], image.shape[0])
    box, (new_w, new_h) = layout(width, height, size)
    resized = (
        image
        if (new_w, new_h) == (image.shape[1], image.shape[0])
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w] = resized
    return canvas, box


def layout(width: int, height: int, size: int) -> tuple[Letterbox, tuple[int, int]]:
    """Where a `width`x`height` image goes in the `size` square: its Letterbox and its resized
    (width, height). Shared with the on-device path (core.models.device_prep), so boxes map back
    the same way whichever path prepared the image."""
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    box = Letterbox(scale, (size - new_w) // 2, (size - new_h) // 2, width, height)
    return box, (new_w, new_h)


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    """Letterboxed HWC uint8 images -> one NCHW float32 batch in [0, 1]."""
    stacked = np.stack(images).astype(np.float32) / 255.0
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))
