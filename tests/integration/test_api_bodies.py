"""Hostile request bodies: zip bombs with forged sizes, odd zip entries, and bodies over the size
limit sent without a Content-Length. Each is refused with a problem or a per-entry error, and the
API keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
import pytest

from core.config import Settings
from tests.integration.api_server import ApiServer, api_settings, login, start_api
from tests.integration.test_api_uploads import _topic_size
from tests.integration.workers import scene_jpeg

MiB = 1024 * 1024


def _deflated_zeros(size: int) -> bytes:
    """Raw deflate of `size` (a whole number of MiB) zero bytes. One compressed MiB ended by a
    full flush stands on its own, so repeating it builds a GiB in no time."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    one_mib = block.compress(bytes(MiB)) + block.flush(zlib.Z_FULL_FLUSH)
    return one_mib * (size // MiB) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


@dataclass(frozen=True)
class Entry:
    """A zip member as written by hand: headers free to lie about what the payload holds."""

    name: str
    payload: bytes  # as stored in the archive
    method: int = zipfile.ZIP_STORED
    size: int | None = None  # declared inflated size; None: the payload's length
    crc: int | None = None  # declared CRC-32; None: the payload's
    flags: int = 0


def _forged_zip(entries: list[Entry]) -> bytes:
    body, directory = bytearray(), bytearray()
    for e in entries:
        raw, offset = e.name.encode(), len(body)
        size = len(e.payload) if e.size is None else e.size
        crc = zlib.crc32(e.payload) if e.crc is None else e.crc
        fields = (20, e.flags, e.method, 0, 0x21, crc, len(e.payload), size, len(raw))
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + raw + e.payload
        directory += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0, offset
        )
        directory += raw
    count = len(entries)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), len(body), 0)
    return bytes(body + directory + end)


def _zip(**members: bytes) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return archive.getvalue()


def _send_batch(server: ApiServer, archive: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/analyze/batch",
        headers=headers,
        files=[("images", ("set.zip", archive, "application/zip"))],
        timeout=120,
    )


def _sample_rss(process: psutil.Process, while_alive: threading.Thread, peak: list[int]) -> None:
    while while_alive.is_alive():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.005)


def test_a_zip_bomb_with_forged_sizes_is_refused_while_the_api_stays_responsive(
    api: ApiServer,
) -> None:
    # Four entries of 1 GiB of zeros (1 MB each compressed), each declaring 100 zero bytes.
    bomb = _deflated_zeros(1024 * MiB)
    lie = {"method": zipfile.ZIP_DEFLATED, "size": 100, "crc": zlib.crc32(bytes(100))}
    entries = [Entry(f"bomb{i}.jpg", bomb, **lie) for i in range(4)]
    archive = _forged_zip([*entries, Entry("good.jpg", scene_jpeg(5))])
    process = psutil.Process(os.getpid())  # the API server runs in a thread of this process
    baseline, peak = process.memory_info().rss, [0]
    replies: list[httpx.Response] = []
    headers = login(api, "analyst")
    sender = threading.Thread(target=lambda: replies.append(_send_batch(api, archive, headers)))
    sampler = threading.Thread(target=_sample_rss, args=(process, sender, peak))
    sender.start()
    sampler.start()
    slowest = 0.0
    while sender.is_alive():
        started = time.monotonic()
        assert httpx.get(f"{api.url}/health", timeout=30).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.02)
    sender.join()
    sampler.join()
    grown = peak[0] - baseline
    assert slowest < 2.0, f"/health took {slowest:.1f} s while the zip was expanded"
    assert grown < 256 * MiB, f"RSS grew by {grown // MiB} MiB while the zip was expanded"
    reply = replies[0]
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert (body["accepted"], body["refused"]) == (1, 4)
    for item in body["items"]:  # what the headers promise (100 zero bytes), never the GiB
        if item["filename"] != "good.jpg":
            assert item["error"]["code"] in {"unsupported_format", "bad_zip_entry"}, item


def test_a_zip_listing_600_000_members_is_refused_before_they_are_parsed(api: ApiServer) -> None:
    # Nothing but central-directory records: 47 bytes each, ~25 µs each for zipfile to parse.
    count = 600_000
    fields = (20, 20, 0, 0, 0, 0x21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0)  # name length 1, all else 0
    record = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, *fields)
    directory = (record + b"a") * count
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, len(directory), 0, 0)
    headers = login(api, "analyst")
    started = time.monotonic()
    reply = _send_batch(api, directory + end, headers)
    elapsed = time.monotonic() - started
    assert reply.status_code == 413, reply.text
    assert reply.json()["code"] == "batch_too_large"
    assert elapsed < 4.0, f"{elapsed:.1f} s to refuse a zip of {count} empty members"


@pytest.fixture
def tight_api(deployment: Settings) -> Iterator[ApiServer]:
    """An API with small limits: 400 kB an image, 6 images and 1 MB a batch."""
    server = start_api(
        api_settings(
            deployment,
            max_image_bytes=400_000,
            api_max_batch_items=6,
            api_max_request_bytes=1_000_000,
        )
    )
    yield server
    server.stop()


def test_odd_zip_entries_are_refused_one_by_one(tight_api: ApiServer) -> None:
    jpeg = scene_jpeg(6)
    bzipped = io.BytesIO()
    with zipfile.ZipFile(bzipped, "w", zipfile.ZIP_BZIP2) as zipped:
        zipped.writestr("packed.jpg", jpeg)
    archive = _forged_zip(
        [
            Entry("good.jpg", jpeg),
            Entry("big.png", _deflated_zeros(MiB), zipfile.ZIP_DEFLATED, size=MiB),
            Entry("inner.jpg", _zip(**{"a.jpg": jpeg})),
            Entry("locked.jpg", jpeg, flags=0x1),
            Entry("cut.jpg", jpeg[:1000], size=len(jpeg), crc=zlib.crc32(jpeg)),
        ]
    )
    reply = httpx.post(
        f"{tight_api.url}/api/v1/analyze/batch",
        headers=login(tight_api, "analyst"),
        files=[
            ("images", ("set.zip", archive, "application/zip")),
            ("images", ("bz.zip", bzipped.getvalue(), "application/zip")),
        ],
    )
    assert reply.status_code == 202, reply.text
    codes = {i["filename"]: (i["error"] or {}).get("code") for i in reply.json()["items"]}
    assert codes == {
        "good.jpg": None,
        "big.png": "too_large",
        "inner.jpg": "nested_zip",
        "locked.jpg": "encrypted_entry",
        "cut.jpg": "bad_zip_entry",
        "packed.jpg": "unsupported_compression",
    }
    assert asyncio.run(_topic_size(tight_api.settings)) == 1


def test_a_batch_over_its_item_or_byte_budget_is_refused_whole(tight_api: ApiServer) -> None:
    zeros = bytes(300_000)  # each under the image limit; four of them over the batch's bytes
    too_many = _zip(**{f"{i}.jpg": b"x" for i in range(7)})
    too_big = _zip(**{f"{i}.png": zeros for i in range(4)})
    headers = login(tight_api, "analyst")
    for archive in (too_many, too_big):
        reply = _send_batch(tight_api, archive, headers)
        assert reply.status_code == 413, reply.text
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["code"] == "batch_too_large"
    assert asyncio.run(_topic_size(tight_api.settings)) == 0


def _chunked(data: bytes, sent: list[int], chunk: int = 64 * 1024) -> Iterator[bytes]:
    """`data` as a generator: httpx sends it chunked, without a Content-Length."""
    for start in range(0, len(data), chunk):
        sent.append(chunk)
        yield data[start : start + chunk]


def _multipart(padding: int) -> tuple[bytes, dict[str, str]]:
    """A good upload, plus a file part of `padding` bytes that the route ignores."""
    files = {
        "image": ("s.jpg", scene_jpeg(7), "image/jpeg"),
        "padding": ("pad.bin", bytes(padding), "application/octet-stream"),
    }
    request = httpx.Request("POST", "/", files=files)
    return request.read(), {"content-type": request.headers["content-type"]}


def test_a_chunked_body_over_the_limit_is_refused_without_being_read(
    tight_api: ApiServer,
) -> None:
    headers = login(tight_api, "analyst")
    url = f"{tight_api.url}/api/v1/analyze"
    body, content_type = _multipart(80 * MiB)
    sent: list[int] = []
    reply = httpx.post(url, headers=headers | content_type, content=_chunked(body, sent))
    assert reply.status_code == 413, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "request_too_large"
    assert sum(sent) < 16 * MiB, "the server read the body to its end"

    body, content_type = _multipart(100_000)
    sent.clear()
    reply = httpx.post(url, headers=headers | content_type, content=_chunked(body, sent))
    assert reply.status_code == 202, reply.text
    assert sum(sent) >= len(body)
