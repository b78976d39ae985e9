"""Damaged PNG and JPEG files are refused before any decoder sees them (Pillow itself ignores the
CRCs of PNG image data and reads a JPEG's header without its image data), with messages in fixed
wording; every well-formed variant still passes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from core.imaging import ImageRejected, decode_image, probe_image
from core.imaging import decode as reasons
from core.imaging.integrity import Damaged, check_integrity
from tests.unit.test_image_decode import RGB, encode


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def rebuilt_png(data: bytes, bad_crc: bytes | None = None, extra: bytes = b"") -> bytes:
    """`data` chunk by chunk, with a wrong CRC on the chunk of type `bad_crc`."""
    out = data[:8]
    for kind, body in png_chunks(data):
        out += chunk(kind, body, 0xDEADBEEF if kind == bad_crc else None)
    return out + extra


PNG = encode(RGB, "PNG")
JPEG = encode(RGB, "JPEG", quality=90)


def bad_crc_png() -> bytes:
    """A PNG that Pillow decodes though its IDAT chunk's CRC is wrong."""
    return rebuilt_png(PNG, bad_crc=b"IDAT")


def _both(data: bytes) -> list[ImageRejected]:
    """What the API's probe and the worker's decode say about `data` (both must refuse it)."""
    refusals = []
    for check in (probe_image, decode_image):
        with pytest.raises(ImageRejected) as caught:
            check(data)
        refusals.append(caught.value)
    return refusals


def _fixed_wording(message: str) -> None:
    for leak in ("Error", "0x", "<", "pi_heif", "Traceback"):
        assert leak not in message, message


@pytest.mark.parametrize("kind", [b"IHDR", b"IDAT", b"IEND"])
def test_a_png_chunk_with_a_wrong_crc_is_a_decode_error(kind: bytes) -> None:
    data = rebuilt_png(PNG, bad_crc=kind)
    for refusal in _both(data):
        assert refusal.reason == reasons.DECODE_ERROR
        assert str(refusal) == "the PNG file is damaged: a chunk fails its CRC check"


def test_pillow_alone_would_decode_the_bad_idat_crc() -> None:
    """Why the check exists: without it this file is analysed."""
    Image.open(io.BytesIO(bad_crc_png())).load()


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (PNG[:-12], reasons.TRUNCATED, "the PNG file is cut short: it ends before its IEND chunk"),
        (PNG[:-20], reasons.TRUNCATED, "the PNG file is cut short: it ends inside a chunk"),
        (PNG + b"PK\x03\x04", reasons.DECODE_ERROR, "the PNG file is damaged: bytes follow its"),
        (
            PNG[:33] + b"\xff\xff\xff\xff" + PNG[37:],
            reasons.DECODE_ERROR,
            "the PNG file is damaged: a chunk declares an impossible length",
        ),
    ],
    ids=["no-iend", "cut-in-a-chunk", "trailing-bytes", "huge-length"],
)
def test_broken_png_structure(data: bytes, reason: str, message: str) -> None:
    for refusal in _both(data):
        assert refusal.reason == reason
        assert str(refusal).startswith(message)


@pytest.mark.parametrize("cut", [3, 4, 20, 100, 300, len(JPEG) // 2, len(JPEG) - 2])
def test_a_cut_jpeg_is_truncated_in_the_probe_too(cut: int) -> None:
    for refusal in _both(JPEG[:cut]):
        assert refusal.reason == reasons.TRUNCATED
        assert str(refusal).startswith("the JPEG file is cut short: ")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0" + b"\x00" * 20,  # a segment of length 0
        b"\xff\xd8\xff\xd9",  # no image data between SOI and EOI
        JPEG[:20] + b"junk" + JPEG[20:],  # bytes where a marker belongs (after APP0)
        JPEG[:2] + b"\xff\xd8" + JPEG[2:],  # a second SOI
    ],
    ids=["zero-length-segment", "empty", "junk-before-marker", "nested-soi"],
)
def test_broken_jpeg_structure_is_a_decode_error(data: bytes) -> None:
    for refusal in _both(data):
        assert refusal.reason == reasons.DECODE_ERROR
        assert str(refusal).startswith("the JPEG file is damaged: ")


def _jpeg_variants() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6
    grey = RGB.convert("L")
    return {
        "baseline": JPEG,
        "progressive": encode(RGB, "JPEG", progressive=True),
        "optimized": encode(RGB, "JPEG", optimize=True),
        "restart-markers": encode(RGB, "JPEG", restart_marker_blocks=1),
        "exif": encode(RGB, "JPEG", exif=exif),
        "cmyk": encode(RGB.convert("CMYK"), "JPEG"),
        "grey": encode(grey, "JPEG"),
        "444": encode(RGB, "JPEG", subsampling=0, quality=100),
        "trailer-after-eoi": JPEG + b"\x00" * 16 + b"motion photo bytes",
        "noise": encode(
            Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300, 3), np.uint8)),
            "JPEG",
            quality=100,
        ),
    }


def _png_variants() -> dict[str, bytes]:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * 1000, zip=True)
    return {
        "rgb": PNG,
        "rgba": encode(RGB.convert("RGBA"), "PNG"),
        "palette": encode(RGB.convert("P"), "PNG"),
        "grey16": encode(Image.fromarray(np.full((40, 50), 65535, dtype=np.uint16)), "PNG"),
        "text-chunk": encode(RGB, "PNG", pnginfo=info),
        "no-compression": encode(RGB, "PNG", compress_level=0),
    }


@pytest.mark.parametrize(
    ("name", "data"), [*_jpeg_variants().items(), *_png_variants().items()], ids=str
)
def test_well_formed_variants_pass(name: str, data: bytes) -> None:
    check_integrity(data, "jpeg" if data[:2] == b"\xff\xd8" else "png")
    assert probe_image(data)[0] in ("jpeg", "png")
    assert decode_image(data).pixels.ndim == 3


def test_other_formats_are_left_to_the_decoder() -> None:
    check_integrity(b"BM not checked here", "bmp")
    with pytest.raises(Damaged):
        check_integrity(b"\xff\xd8\xff", "jpeg")


def test_truncation_is_caught_even_with_pillow_told_to_load_truncated_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for data in (JPEG[: len(JPEG) - 2], PNG[:-12]):
        with pytest.raises(ImageRejected) as caught:
            decode_image(data)
        assert caught.value.reason == reasons.TRUNCATED


def test_messages_are_fixed_wording_once_ultralytics_patched_pillow() -> None:
    """Importing ultralytics wraps Image.open (it tries an optional HEIF plugin on failure, and
    that failure's text used to reach the sender); it leaves truncated loading off."""
    from core.models.offline import prepare_offline

    prepare_offline()
    import ultralytics.utils.patches  # noqa: F401 - installs the wrapper

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    structurally_whole_but_unreadable = b"\xff\xd8\xff\xda\x00\x02\x11\x22\xff\xd9"
    garbage = [
        structurally_whole_but_unreadable,
        JPEG[:20],
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", b"\x00" * 13) + chunk(b"IEND", b""),
        b"BM" + b"\x00" * 60,
        b"II*\x00" + b"\x00" * 60,
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20,
    ]
    for data in garbage:
        for refusal in _both(data):
            assert refusal.reason in (reasons.DECODE_ERROR, reasons.TRUNCATED)
            _fixed_wording(str(refusal))
    unreadable = _both(structurally_whole_but_unreadable)[0]
    assert str(unreadable) == "the JPEG file is damaged: the decoder cannot read it"
