"""Internal stage messages between the agents of a split deployment (compact: object keys and a
lossless model-ready PNG, never raw tensors).

A prepared image travels as a binary frame, not as JSON with the PNG in base64 (a third larger,
and encoded and decoded once more per image): `MPF1`, the length of the JSON metadata as a
4-byte big-endian integer, the metadata, then the PNG bytes."""

from __future__ import annotations

import struct
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import DetectionOut, ImageMeta, ModelRef, PrivacyOut


class Origin(BaseModel):
    topic: str
    partition: int
    offset: int


class LetterboxInfo(BaseModel):
    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int


class StageMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    request_id: str
    source_id: str
    submitted_at: datetime | None = None
    captured_at: datetime | None = None
    received_at: datetime
    options: dict[str, object] = Field(default_factory=dict)
    image: ImageMeta
    privacy: PrivacyOut | None = None  # what intake blurred out of the kept original
    letterbox: LetterboxInfo
    origin: Origin
    timings_ms: dict[str, float] = Field(default_factory=dict)


class PreparedImage(StageMessage):
    """preprocess -> inference: what is known of the image; its letterboxed pixels travel beside
    it in the frame (`pack_prepared`)."""


PREPARED_FRAME = b"MPF1"
_LENGTH = struct.Struct(">I")


def pack_prepared(record: PreparedImage, model_input_png: bytes) -> bytes:
    """One prepared-image message value: the frame header, the metadata, the PNG."""
    meta = record.model_dump_json().encode()
    return PREPARED_FRAME + _LENGTH.pack(len(meta)) + meta + model_input_png


def unpack_prepared(value: bytes) -> tuple[PreparedImage, bytes]:
    """The metadata and the PNG of a prepared-image message; ValueError when it is none."""
    head = len(PREPARED_FRAME) + _LENGTH.size
    if len(value) < head or not value.startswith(PREPARED_FRAME):
        raise ValueError("not a prepared-image frame")
    (length,) = _LENGTH.unpack_from(value, len(PREPARED_FRAME))
    if head + length > len(value):
        raise ValueError("prepared-image frame cut short")
    record = PreparedImage.model_validate_json(value[head : head + length])
    return record, value[head + length :]


class DetectedImage(StageMessage):
    """inference -> analysis: detections in original-image pixels."""

    detections: list[DetectionOut]
    model: ModelRef
