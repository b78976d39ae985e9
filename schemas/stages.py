"""Internal stage messages between the pipeline's agents (compact: object keys and a lossless
model-ready PNG, never raw tensors)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import DetectionOut, ImageMeta, ModelRef


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
    received_at: datetime
    options: dict[str, object] = Field(default_factory=dict)
    image: ImageMeta
    letterbox: LetterboxInfo
    origin: Origin
    timings_ms: dict[str, float] = Field(default_factory=dict)


class PreparedImage(StageMessage):
    """preprocess -> inference: the letterboxed image as base64 PNG."""

    model_input_png: str


class DetectedImage(StageMessage):
    """inference -> analysis: detections in original-image pixels."""

    detections: list[DetectionOut]
    model: ModelRef
