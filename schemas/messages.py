"""Message contracts of the pipeline's public topics (results, dead letters, alerts) and of its
internal stage topics. Every message carries `schema_version`; a change that breaks readers gets a
new version and a new topic suffix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
IMAGE_REF_CONTENT_TYPE = "application/vnd.mugpos.image-ref+json"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = SCHEMA_VERSION


class PrivacyOut(BaseModel):
    """What was blurred out of the kept original (MUGPOS_PRIVACY_BLUR)."""

    blurred: Literal["faces"] = Field(
        description="What was looked for and blurred before the original was stored."
    )
    regions: int = Field(
        ge=0, description="How many were found and blurred; 0: none found, stored as received."
    )


class ImageRef(_Message):
    """Claim check: the input image lives in the object store, not in the Kafka message."""

    image_ref: str = Field(description="Object key of the original image.")
    content_type: str | None = None
    size_bytes: int | None = Field(None, ge=0)
    privacy: PrivacyOut | None = Field(
        None,
        description="Set by the API when it stored the object already blurred: the worker "
        "reports it and does not look again.",
    )


class ImageMeta(BaseModel):
    width: int
    height: int
    format: str
    sha256: str
    size_bytes: int
    object_key: str | None = Field(None, description="Where the original bytes are kept.")


class DetectionOut(BaseModel):
    class_name: str
    role: str
    confidence: float = Field(ge=0, le=1)
    box: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in original pixels")


class VerdictOut(BaseModel):
    rule_id: str
    version: int
    name: str
    passed: bool | None = Field(description="None: the rule does not apply to this picture.")
    severity: str
    measured: float | bool | str | None
    threshold: float | bool | str | None
    unit: str | None
    subjects: list[int]
    actions: list[str]
    message: str
    error: str | None = Field(
        None, description="Set when the rule could not be evaluated; passed is then None."
    )
    instant_passed: bool | None = Field(
        None,
        description="This picture's own outcome, before the rule's hold (`passed` is the outcome "
        "in force for the source); for a rule without a hold, the same as passed.",
    )


class ModelRef(BaseModel):
    name: str
    version: str
    backend: str | None = None
    device: str | None = None
    roles: list[str] | None = Field(
        None,
        description="The roles (mug, coaster, table, hazard) the model has a class for; a rule "
        "about one it lacks is not applicable to its results. Null: all of them.",
    )


class HeldOut(BaseModel):
    """A held rule's outcome for one tracked mug."""

    failing: bool
    since: datetime = Field(description="When this outcome began (frame time).")
    for_s: float = Field(description="How long it has lasted, up to this frame.")


class TrackOut(BaseModel):
    """A mug followed across a source's frames."""

    track_id: str
    mug: int | None = Field(
        description="Its index in positioning.mugs; null when it is hidden in this picture."
    )
    box: tuple[float, float, float, float] = Field(description="Where it was last seen (px).")
    first_seen: datetime
    last_seen: datetime
    seen_for_s: float = Field(description="From first seen to this frame.")
    held: dict[str, HeldOut] = Field(
        default_factory=dict, description="By rule id: the outcome in force of each held rule."
    )


class ErrorInfo(BaseModel):
    stage: str
    reason: str = Field(description="Stable reason code, e.g. unsupported_format, model_error.")
    message: str


class AnalysisResult(_Message):
    """One result per request on `{prefix}.results.v1`, keyed by request id."""

    request_id: str
    source_id: str
    status: Literal["ok", "rejected", "failed", "expired"] = Field(
        description="`expired`: a frame older than its source's `max_age_s` when the pipeline "
        "reached it, not analysed (after an outage a camera resumes with current frames)."
    )
    submitted_at: datetime | None = None
    completed_at: datetime
    image: ImageMeta | None = None
    privacy: PrivacyOut | None = Field(
        None, description="Set when faces are blurred out of kept originals; null: they are not."
    )
    detections: list[DetectionOut] = Field(default_factory=list)
    positioning: dict[str, object] | None = Field(
        None, description="Scene and per-mug facts in cm, scores and recommendations."
    )
    verdicts: list[VerdictOut] = Field(default_factory=list)
    model: ModelRef | None = None
    rule_set_version: str | None = None
    source_version: int | None = Field(
        None, description="The version of the source's settings used; null: it has none."
    )
    captured_at: datetime | None = Field(
        None, description="When the camera took the picture, if its sender said so."
    )
    tracks: list[TrackOut] = Field(
        default_factory=list,
        description="The source's tracked mugs after this frame (registered sources only).",
    )
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per stage.")
    latency_ms: float | None = Field(None, description="Submission to result.")
    error: ErrorInfo | None = None
    trace_id: str | None = Field(
        None,
        description="W3C trace id (32 hex digits) of this image's trace, when the worker traces.",
        pattern="^[0-9a-f]{32}$",
    )


class DeadLetter(_Message):
    """An input that could not be processed, on `{prefix}.dlq.v1`, with everything to replay it."""

    request_id: str
    stage: str
    reason: str
    message: str
    original_topic: str
    original_partition: int
    original_offset: int
    original_key: str | None = None
    original_headers: dict[str, str] = Field(default_factory=dict)
    object_key: str | None = Field(None, description="Where the original bytes were kept.")
    failed_at: datetime


class Alert(BaseModel):
    """An alert event on `{prefix}.alerts.v2`: a rule with an `alert` or `webhook` action began
    failing for a subject (`raised`), or stopped (`resolved`).

    One alert per (source, rule, subject) while it is open, not one per frame: a subject is a
    tracked mug on a registered source, else the whole scene of a named source, else (pictures of
    no particular source) the picture itself, which is never resolved. Version 2: version 1 fired
    for every failing picture and had no event, ids or webhooks."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[2] = 2
    alert_id: str = Field(
        description="This event's id; a redelivered frame republishes the same id, so receivers "
        "deduplicate on it."
    )
    dedup_key: str = Field(
        description="The same for the `raised` and `resolved` events of one (source, rule, "
        "subject): `{source_id}/{rule_id}/{subject}`."
    )
    event: Literal["raised", "resolved"]
    request_id: str = Field(description="The picture whose analysis made this event.")
    source_id: str
    rule_id: str
    rule_version: int
    rule: str
    severity: str
    subject: str = Field(
        description="A track id (`t3`), `scene`, or for a picture of no particular source its "
        "request id."
    )
    subjects: list[int] = Field(
        default_factory=list, description="Failing mugs/detections in that picture (indices)."
    )
    measured: float | bool | str | None = None
    threshold: float | bool | str | None = None
    message: str
    captured_at: datetime | None = Field(
        None, description="When the camera took the picture, if its sender said so."
    )
    raised_at: datetime = Field(description="When the alert was raised (frame time).")
    resolved_at: datetime | None = Field(None, description="Set on `resolved` events.")
    webhooks: list[str] = Field(
        default_factory=list,
        description="Webhook endpoints that receive this event (the rule's webhook actions and "
        "the source's webhooks).",
    )


PUBLIC_MESSAGES: dict[str, type[BaseModel]] = {
    "analysis-result": AnalysisResult,
    "dead-letter": DeadLetter,
    "alert": Alert,
    "image-ref": ImageRef,
}
