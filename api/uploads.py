"""Upload → checked up front → original in the object store → claim-check message on the image
topic. Anything refused here is answered with a 4xx and nothing is stored or enqueued."""

from __future__ import annotations

import asyncio
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
from infra.results_history import record_pending
from schemas.messages import IMAGE_REF_CONTENT_TYPE, ImageRef

_STATUS_BY_REASON = {EMPTY: 400, TOO_LARGE: 413, TOO_MANY_PIXELS: 413}
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: str
    source_id: str
    object_key: str
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
    request_id = f"r-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    key = upload_key(source_id, request_id, kind, now)
    await asyncio.gather(  # both must be durable before the claim check is published
        svc.store.put(
            key, data, content_type=CONTENT_TYPES[kind], metadata={"request-id": request_id}
        ),
        record_pending(svc.db, request_id, source_id, now),
    )
    ref = ImageRef(image_ref=key, content_type=CONTENT_TYPES[kind], size_bytes=len(data))
    headers = [
        ("request-id", request_id.encode()),
        ("source-id", source_id.encode()),
        ("content-type", IMAGE_REF_CONTENT_TYPE.encode()),
        ("submitted-at", now.isoformat().encode()),
    ]
    if options:
        headers.append(("options", orjson.dumps(options)))
    await svc.producer.send_and_wait(
        svc.topics.images, ref.model_dump_json().encode(), key=request_id.encode(), headers=headers
    )
    svc.metrics.analysis_requests.labels("accepted").inc()
    return Accepted(request_id, source_id, key, kind, size[0], size[1], len(data))
