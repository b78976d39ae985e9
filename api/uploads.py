"""Upload → checked up front → on the image topic (acks=all) → 202. Anything refused here is
answered with a 4xx and nothing is stored or enqueued.

The request waits for one thing only: the broker's acknowledgement. An image up to
INLINE_MAX_BYTES travels inside the Kafka message, like any Kafka client's, and the worker keeps
the original (agents.stages.preprocess); a larger one goes to the object store first and travels
as a claim check. The bookkeeping around an accepted upload — the `pending` state
(ResultStore.mark_pending) and the audit entry — is written in batches off the request path."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from api.problems import Problem
from api.services import ApiServices
from core.imaging import ImageRejected, probe_image
from core.imaging.decode import CONTENT_TYPES, EMPTY, TOO_LARGE, TOO_MANY_PIXELS
from core.pipeline.intake import IntakeError, parse_headers
from infra.object_store.keys import upload_key
from schemas.messages import IMAGE_REF_CONTENT_TYPE, ImageRef

# Half of Kafka's default message limit (message.max.bytes / max.request.size, 1 MiB): room for
# headers and the record batch, on any broker left at its defaults. Typical camera frames and
# 640 px scenes are far below it; phone photos of several MB go by claim check.
INLINE_MAX_BYTES = 512 * 1024

_STATUS_BY_REASON = {EMPTY: 400, TOO_LARGE: 413, TOO_MANY_PIXELS: 413}
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: str
    source_id: str
    object_key: str | None  # None: inline; the worker keeps the original (result's image)
    format: str
    width: int
    height: int
    size_bytes: int


def check_options(raw: str | None) -> dict[str, object]:
    if not raw:
        return {}
    try:
        return parse_headers([("options", raw.encode())]).options
    except IntakeError as exc:
        raise Problem(422, str(exc), code=exc.reason) from None


def check_image(
    svc: ApiServices, data: bytes, declared_type: str | None, filename: str
) -> tuple[str, int, int]:
    """(format, width, height), or a Problem naming what is wrong with the file."""
    try:
        kind, width, height = probe_image(data, svc.limits)
    except ImageRejected as exc:
        status = _STATUS_BY_REASON.get(exc.reason, 415 if "format" in exc.reason else 422)
        raise Problem(status, f"{filename}: {exc}", code=exc.reason) from None
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in _GENERIC_TYPES and declared != CONTENT_TYPES[kind]:
        raise Problem(
            415,
            f"{filename}: declared as {declared} but the bytes are {kind.upper()}",
            code="content_type_mismatch",
        )
    return kind, width, height


async def enqueue(
    svc: ApiServices,
    data: bytes,
    kind: str,
    size: tuple[int, int],
    source_id: str,
    options: dict[str, object],
) -> Accepted:
    """On the image topic, acknowledged by the broker (acks=all), then marked pending. Raises
    (nothing marked) when the image could not be stored or enqueued."""
    request_id = f"r-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    content_type = CONTENT_TYPES[kind]
    key: str | None = None
    if len(data) <= INLINE_MAX_BYTES:
        value = data
    else:
        key = upload_key(source_id, request_id, kind, now)
        await svc.store.put(
            key, data, content_type=content_type, metadata={"request-id": request_id}
        )
        ref = ImageRef(image_ref=key, content_type=content_type, size_bytes=len(data))
        value, content_type = ref.model_dump_json().encode(), IMAGE_REF_CONTENT_TYPE
    headers = [
        ("request-id", request_id.encode()),
        ("source-id", source_id.encode()),
        ("content-type", content_type.encode()),
        ("submitted-at", now.isoformat().encode()),
    ]
    if options:
        headers.append(("options", orjson.dumps(options)))
    await svc.producer.send_and_wait(
        svc.topics.images, value, key=request_id.encode(), headers=headers
    )
    await svc.results.mark_pending(request_id, source_id, now)
    svc.metrics.analysis_requests.labels("accepted").inc()
    return Accepted(request_id, source_id, key, kind, size[0], size[1], len(data))
