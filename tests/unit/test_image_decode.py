"""Untrusted bytes: a corpus of bad and awkward inputs, each with the right outcome."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.imaging import ImageLimits, ImageRejected, decode_image, sniff_format
from core.imaging import decode as reasons


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    decoded = decode_image(encode(RGB, fmt))
    assert decoded.pixels.shape == (60, 80, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.format == fmt.lower()
    assert len(decoded.sha256) == 64


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", reasons.EMPTY),
        (b"hello, this is a text file\n" * 10, reasons.UNSUPPORTED_FORMAT),
        (encode(RGB, "JPEG")[:300], reasons.TRUNCATED),
        (png_bomb(100_000, 100_000), reasons.TOO_MANY_PIXELS),
        (encode(RGB, "GIF"), reasons.UNSUPPORTED_FORMAT),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, reasons.DECODE_ERROR),
    ],
    ids=["zero-bytes", "text", "truncated-jpeg", "png-bomb", "gif", "garbage-png"],
)
def test_bad_inputs_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data)
    assert caught.value.reason == reason
    assert str(caught.value)


def test_over_the_byte_limit() -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(encode(RGB, "PNG"), ImageLimits(max_bytes=100))
    assert caught.value.reason == reasons.TOO_LARGE


def test_sixteen_bit_png_becomes_8_bit_rgb() -> None:
    grey16 = Image.fromarray(np.full((40, 50), 65535, dtype=np.uint16))
    decoded = decode_image(encode(grey16, "PNG"))
    assert decoded.pixels.shape == (40, 50, 3)
    assert decoded.pixels.max() == 255


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = decode_image(encode(RGB.convert("CMYK"), "JPEG"))
    assert decoded.pixels.shape == (60, 80, 3)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    decoded = decode_image(encode(RGB, "JPEG", exif=exif))
    assert decoded.pixels.shape == (80, 60, 3)


def test_alpha_is_composited_on_white() -> None:
    transparent = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    assert decode_image(encode(transparent, "PNG")).pixels.min() == 255


def test_format_comes_from_bytes_not_from_what_the_sender_says() -> None:
    assert sniff_format(encode(RGB, "PNG")) == "png"
    assert sniff_format(encode(RGB, "WEBP")) == "webp"
    assert sniff_format(b"GIF89a....") == "gif"
    assert sniff_format(b"%PDF-1.7") is None


def test_multi_frame_images_are_refused() -> None:
    frames = encode(RGB, "TIFF", save_all=True, append_images=[RGB.rotate(90, expand=True)])
    with pytest.raises(ImageRejected) as caught:
        decode_image(frames)
    assert caught.value.reason == reasons.ANIMATED


def test_decoding_behaves_the_same_once_ultralytics_patched_pillow() -> None:
    """Importing ultralytics wraps Image.open (it tries an optional HEIF plugin on failure);
    garbage must still be a clean rejection, not a crash."""
    from core.models.offline import prepare_offline

    prepare_offline()
    import ultralytics.utils.patches  # noqa: F401 - installs the wrapper

    with pytest.raises(ImageRejected) as caught:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert caught.value.reason == reasons.DECODE_ERROR
