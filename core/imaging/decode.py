"""Validate and decode an uploaded image without trusting anything the sender said about it.

The format comes from the magic bytes, never from a header or file name. Size limits are checked
before decoding (bytes) and from the header before pixels are allocated (decompression bombs).
A PNG or JPEG must be structurally whole first (core.imaging.integrity: chunk CRCs, markers up
to the end of the image), in the API's header-only probe as in the worker's full decode.
EXIF orientation is applied and every mode (16-bit, CMYK, palette, alpha) ends as 8-bit RGB.
Each refusal carries a stable reason code for dead-letter records and `rejected` results, and a
message in fixed wording: it reaches whoever sent the file, so it never carries a decoder's
exception text (logged at debug level instead).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from core.imaging.integrity import Damaged, check_integrity

# Reason codes (the DLQ contract).
EMPTY = "empty_input"
TOO_LARGE = "too_large"
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_MANY_PIXELS = "too_many_pixels"
TRUNCATED = "truncated_image"
DECODE_ERROR = "decode_error"
ANIMATED = "animated_image"

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
)
SUPPORTED = ("jpeg", "png", "webp", "bmp", "tiff")
CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}
log = logging.getLogger(__name__)


class ImageRejected(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # width x height, checked before any pixel is decoded
    min_side: int = 16


@dataclass(frozen=True, slots=True)
class DecodedImage:
    pixels: np.ndarray  # H x W x 3, uint8, RGB, orientation applied
    format: str
    width: int
    height: int
    sha256: str
    size_bytes: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """An image's header once every pre-decode check passed: enough for a decoder other than
    Pillow's (nvJPEG on a GPU) to know whether it can take the file and how to turn it upright."""

    format: str
    width: int  # orientation applied, as in DecodedImage
    height: int
    mode: str  # Pillow's mode of the stored pixels: a JPEG is RGB (YCbCr), L or CMYK
    orientation: int  # EXIF orientation: 1 upright, 2-8 mirrored and/or turned


def sniff_format(data: bytes) -> str | None:
    """The real format from the first bytes, or None when it is not an image we know."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def _check_bytes(data: bytes, limits: ImageLimits) -> str:
    """The sniffed format, once the byte-level checks pass."""
    if not data:
        raise ImageRejected(EMPTY, "the message holds no bytes")
    if len(data) > limits.max_bytes:
        raise ImageRejected(TOO_LARGE, f"{len(data)} bytes is over the limit of {limits.max_bytes}")
    kind = sniff_format(data)
    if kind is None:
        raise ImageRejected(
            UNSUPPORTED_FORMAT, "not a JPEG, PNG, WebP, BMP or TIFF image (by its first bytes)"
        )
    if kind not in SUPPORTED:
        raise ImageRejected(UNSUPPORTED_FORMAT, f"{kind.upper()} images are not supported")
    try:
        check_integrity(data, kind)
    except Damaged as exc:
        if exc.truncated:
            raise ImageRejected(TRUNCATED, f"the {kind.upper()} file is cut short: {exc}") from None
        raise ImageRejected(DECODE_ERROR, f"the {kind.upper()} file is damaged: {exc}") from None
    return kind


def _open_checked(data: bytes, kind: str, limits: ImageLimits) -> Image.Image:
    """The image opened from its header only, by the sniffed format's decoder alone: sizes and
    frames checked, no pixel allocated."""
    image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[kind]])
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            TOO_MANY_PIXELS, f"{width}x{height} is over the limit of {limits.max_pixels} pixels"
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(
            DECODE_ERROR, f"{width}x{height} is smaller than {limits.min_side} px on a side"
        )
    if getattr(image, "n_frames", 1) > 1:
        raise ImageRejected(ANIMATED, f"{image.n_frames} frames; send one still image")
    return image


@contextmanager
def _reasons(kind: str) -> Iterator[None]:
    """Every decoder failure as an ImageRejected with a reason code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(TOO_MANY_PIXELS, "the image has too many pixels to decode") from None
    except Exception as exc:
        # OSError, UnidentifiedImageError, ValueError, SyntaxError from the decoders; anything
        # else too (ultralytics patches Image.open to import an optional HEIF plugin on failure).
        log.debug("%s decoder failed", kind, exc_info=True)
        if isinstance(exc, OSError) and any(
            word in str(exc).lower() for word in ("truncated", "end of")
        ):
            raise ImageRejected(
                TRUNCATED, f"the {kind.upper()} file is cut short: the image data ends early"
            ) from None
        raise ImageRejected(
            DECODE_ERROR, f"the {kind.upper()} file is damaged: the decoder cannot read it"
        ) from None


def probe_image(data: bytes, limits: ImageLimits | None = None) -> tuple[str, int, int]:
    """(format, width, height) from the header alone: the cheap up-front check of an upload."""
    limits = limits or ImageLimits()
    kind = _check_bytes(data, limits)
    with _reasons(kind):
        image = _open_checked(data, kind, limits)
        return kind, image.width, image.height


def read_header(data: bytes, limits: ImageLimits | None = None) -> ImageHeader:
    """The header of an image that passes every check decode_image makes before decoding (size,
    real format, integrity, pixel count, frames), without decoding a pixel."""
    limits = limits or ImageLimits()
    kind = _check_bytes(data, limits)
    with _reasons(kind):
        image = _open_checked(data, kind, limits)
        width, height = _oriented_size(image)
        return ImageHeader(kind, width, height, image.mode, _orientation(image))


def decode_image(
    data: bytes, limits: ImageLimits | None = None, *, fit: int | None = None
) -> DecodedImage:
    """The whole image as RGB, or, with `fit` (the side of the square it will be letterboxed
    into), a JPEG decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that still leaves at least
    as many pixels as the letterbox keeps: libjpeg then skips most of the work, which costs far
    less than decoding everything and shrinking it afterwards. `width` and `height` are always
    the original's (orientation applied), whatever size `pixels` has."""
    limits = limits or ImageLimits()
    kind = _check_bytes(data, limits)
    with _reasons(kind):
        image = _open_checked(data, kind, limits)
        width, height = _oriented_size(image)
        if fit is not None and kind == "jpeg":
            scale = min(fit / width, fit / height)  # the same either way round
            if scale <= 0.5:
                wanted = (math.ceil(image.width * scale), math.ceil(image.height * scale))
                image.draft(image.mode, wanted)
        image.load()
        image = ImageOps.exif_transpose(image) or image
        rgb = _to_rgb(image)
    pixels = np.asarray(rgb, dtype=np.uint8)
    return DecodedImage(pixels, kind, width, height, hashlib.sha256(data).hexdigest(), len(data))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 when absent or not one of the eight values (as exif_transpose
    treats it)."""
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if value in range(1, 9) else 1


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """Width and height once the EXIF orientation is applied (5-8 turn the image a quarter)."""
    return (image.height, image.width) if _orientation(image) in (5, 6, 7, 8) else image.size


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode as 8-bit RGB: 16-bit greyscale scaled down, alpha composited on white, CMYK
    converted, palettes expanded."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / peak * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
