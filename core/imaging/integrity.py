"""Is the file whole? A structural check of PNG and JPEG bytes, run before any decoder sees them.

Why: Pillow decodes a PNG whose chunk checksums are wrong (it does not check the CRCs of image
data) and reads a JPEG's header without caring whether the image data that follows is all there,
so a damaged file could be accepted by the API's header-only probe, or analysed from corrupt
pixels. Walking the chunks and markers costs a CRC and a regular-expression scan over the bytes,
far less than a decode, so the API and the worker both run it (core.imaging.decode).
"""

from __future__ import annotations

import re
import zlib

_PNG_SIGNATURE_BYTES = 8
_PNG_MAX_CHUNK = 2**31 - 1  # the PNG specification's limit on a chunk's length

_JPEG_EOI, _JPEG_SOS, _JPEG_SOI, _JPEG_TEM = 0xD9, 0xDA, 0xD8, 0x01
_JPEG_RST = range(0xD0, 0xD8)
# The end of a scan's entropy-coded data: a 0xFF that is neither byte stuffing (FF 00), a
# restart marker (FF D0-D7) nor followed by more fill bytes.
_JPEG_AFTER_SCAN = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


class Damaged(ValueError):
    """The file's structure is broken; `truncated` when it ends before its end marker. The
    message is fixed wording, safe to show to whoever sent the file."""

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


def check_integrity(data: bytes, kind: str) -> None:
    """Raise Damaged unless `data` (of sniffed format `kind`) is structurally whole. Only PNG and
    JPEG are walked; the other formats are left to the decoder."""
    if kind == "png":
        _check_png(data)
    elif kind == "jpeg":
        _check_jpeg(data)


def _check_png(data: bytes) -> None:
    """Every chunk's CRC (over type and data) matches, and the file ends with IEND."""
    view, pos, end = memoryview(data), _PNG_SIGNATURE_BYTES, len(data)
    while True:
        if pos + 12 > end:
            raise Damaged("it ends before its IEND chunk", truncated=True)
        length = int.from_bytes(view[pos : pos + 4], "big")
        if length > _PNG_MAX_CHUNK:
            raise Damaged("a chunk declares an impossible length")
        body_end = pos + 8 + length
        if body_end + 4 > end:
            raise Damaged("it ends inside a chunk", truncated=True)
        if zlib.crc32(view[pos + 4 : body_end]) != int.from_bytes(
            view[body_end : body_end + 4], "big"
        ):
            raise Damaged("a chunk fails its CRC check")
        chunk_type = bytes(view[pos + 4 : pos + 8])
        pos = body_end + 4
        if chunk_type == b"IEND":
            if pos != end:
                raise Damaged("bytes follow its IEND chunk")
            return


def _check_jpeg(data: bytes) -> None:
    """Segments chain from SOI through at least one scan to an EOI marker. Bytes after EOI are
    allowed: phones append trailers there (motion photos, maker data), and no decoder reads them."""
    pos, end, scanned = 2, len(data), False  # after SOI, which sniffing found
    while True:
        if pos + 2 > end:
            raise Damaged("it ends before its end-of-image marker", truncated=True)
        if data[pos] != 0xFF:
            raise Damaged("a segment does not start with a marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        pos += 2
        if marker == _JPEG_EOI:
            if not scanned:
                raise Damaged("it holds no image data")
            return
        if marker in _JPEG_RST or marker == _JPEG_TEM:  # markers without a length
            continue
        if marker in (0x00, _JPEG_SOI):
            raise Damaged("a marker is out of place")
        if pos + 2 > end:
            raise Damaged("it ends inside a segment", truncated=True)
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise Damaged("a segment declares an impossible length")
        pos += length
        if pos > end:
            raise Damaged("it ends inside a segment", truncated=True)
        if marker == _JPEG_SOS:
            scanned = True
            after = _JPEG_AFTER_SCAN.search(data, pos)
            if after is None:
                raise Damaged("it ends inside the image data", truncated=True)
            pos = after.start()
