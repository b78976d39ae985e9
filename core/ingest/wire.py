"""How a sampled frame travels: the same conventions as every producer of the images topic
(README "The stream pipeline"): keyed by its source, headers `request-id`, `source-id`,
`captured-at`, `content-type`, the bytes inline up to the same limit the API keeps to."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.topics import partition_key

# A frame encoded larger than schemas.topics.INLINE_MAX_BYTES is downscaled until it fits (a
# camera frame at JPEG quality 90 rarely is: 1080p is typically 150-400 KiB).
JPEG_QUALITY = 90
# The request id is `{source}-{epoch ms}` and at most 128 characters (core.pipeline.intake).
MAX_SOURCE_ID = 100


def check_source_id(source_id: str) -> str:
    """The source id, or ValueError: printable, no more than MAX_SOURCE_ID characters."""
    if not source_id or not source_id.isprintable() or source_id != source_id.strip():
        raise ValueError("a source id is printable text without surrounding spaces")
    if len(source_id) > MAX_SOURCE_ID:
        raise ValueError(f"a source id has at most {MAX_SOURCE_ID} characters")
    return source_id


class RequestIds:
    """`{source}-{epoch ms of the capture}`: readable, ordered, and unique within a run (two
    frames in the same millisecond, or a clock stepping back, take the next free millisecond)."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self._last_ms = -1

    def next(self, captured_at: datetime) -> str:
        ms = max(int(captured_at.timestamp() * 1000), self._last_ms + 1)
        self._last_ms = ms
        return f"{self.source_id}-{ms}"


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds: `2026-05-01T12:00:00.250+00:00`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def frame_key(source_id: str, request_id: str) -> bytes:
    return partition_key(source_id, request_id)


def frame_headers(
    request_id: str, source_id: str, captured_at: datetime, content_type: str
) -> list[tuple[str, bytes]]:
    """The headers the worker reads (core.pipeline.intake.parse_headers)."""
    return [
        ("request-id", request_id.encode()),
        ("source-id", source_id.encode()),
        ("captured-at", iso_utc(captured_at).encode()),
        ("content-type", content_type.encode()),
    ]


def capture_options(existing: str | None, rtsp_transport: str) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS (`key;value|key;value`) with `rtsp_transport` set, keeping
    whatever else the operator put there."""
    pairs = [p for p in (existing or "").split("|") if p and not p.startswith("rtsp_transport;")]
    return "|".join([*pairs, f"rtsp_transport;{rtsp_transport}"])
