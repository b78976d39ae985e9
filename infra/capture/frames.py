"""One frame between a reader and the sender, and the OpenCV calls around it."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

from core.ingest.change import GRID, fingerprint
from core.ingest.wire import JPEG_QUALITY
from schemas.topics import INLINE_MAX_BYTES

log = logging.getLogger(__name__)
_MAX_SHRINKS = 6


@dataclass(slots=True)
class Frame:
    """A sampled frame: decoded pixels (video, live) or a file's bytes as they are (folder)."""

    captured_at: datetime
    pixels: np.ndarray | None = None  # BGR, as OpenCV reads it
    data: bytes | None = None  # already encoded (a folder's image file)
    content_type: str = "image/jpeg"
    name: str = ""  # the file it came from, for messages
    fingerprint: np.ndarray | None = None  # with --on-change; remembered once sent


def quiet_opencv() -> None:
    """OpenCV's and FFmpeg's own warnings ('can't be used to capture by name', 'first frame is
    no keyframe') would break the status line; the reasons that matter are reported by us.
    `OPENCV_LOG_LEVEL` / `OPENCV_FFMPEG_LOGLEVEL` set by the operator win."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read at each open
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def encode_jpeg(pixels: np.ndarray, limit: int = INLINE_MAX_BYTES) -> tuple[bytes, bool]:
    """JPEG at quality 90, downscaled (area filter) until it fits in `limit` bytes; returns the
    bytes and whether it had to be downscaled."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    image, shrunk = pixels, False
    for _ in range(_MAX_SHRINKS + 1):
        ok, buffer = cv2.imencode(".jpg", image, params)
        if not ok:
            raise ValueError("OpenCV could not encode the frame as JPEG")
        data = buffer.tobytes()
        if len(data) <= limit:
            return data, shrunk
        # JPEG size grows about with the pixel count: aim 10 % under the limit.
        scale = math.sqrt(limit / len(data)) * 0.9
        height, width = image.shape[:2]
        size = (max(16, int(width * scale)), max(16, int(height * scale)))
        image, shrunk = cv2.resize(image, size, interpolation=cv2.INTER_AREA), True
    raise ValueError(f"the frame does not fit in {limit} bytes even downscaled")


def decode_image(data: bytes) -> np.ndarray | None:
    """An image file's pixels (BGR, EXIF orientation applied), or None if OpenCV cannot read it."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return pixels if pixels is not None and pixels.size else None


def pixels_print(pixels: np.ndarray) -> np.ndarray:
    """The change fingerprint of a frame, shrunk first with OpenCV's area filter (a 1080p frame
    in about a millisecond; the block means of the small picture are the same averages)."""
    side = GRID * 4
    if pixels.shape[0] > side and pixels.shape[1] > side:
        pixels = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA)
    return fingerprint(pixels)


def file_print(data: bytes) -> np.ndarray | None:
    """The change fingerprint of an image file, decoded at a quarter of its size (fast for JPEG)."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
    return pixels_print(pixels) if pixels is not None and pixels.size else None
