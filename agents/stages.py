"""What each pipeline stage does with one message (or one batch). Every failure ends as a
dead-letter record plus a `rejected`/`failed` result; nothing here raises into Faust."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiokafka.errors import MessageSizeTooLargeError
from pydantic import ValidationError

from core.imaging import ImageRejected
from core.models.letterbox import Letterbox
from core.models.types import Detection
from core.pipeline.assess import assess
from core.pipeline.intake import (
    InputHeaders,
    IntakeError,
    derived_request_id,
    parse_headers,
    request_id_hint,
)
from core.pipeline.prepare import model_input, prepare
from core.positioning.serialize import facts_to_dict
from infra.mongo import ANALYSIS_RESULTS
from infra.object_store import ObjectNotFound
from infra.object_store.keys import result_key, upload_key
from infra.results_history import result_document
from infra.rule_actions import alert_payload
from schemas.messages import IMAGE_REF_CONTENT_TYPE, AnalysisResult, DeadLetter, ErrorInfo, ImageRef
from schemas.stages import DetectedImage, LetterboxInfo, Origin, PreparedImage
from schemas.topics import STAGE_MESSAGE_MAX_BYTES
from streams.context import PipelineContext

log = logging.getLogger(__name__)


class Producer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Any: ...


async def publish(producer: Producer, topic: str, key: str, value: bytes) -> None:
    """Produce and wait for the broker's acknowledgement: the input is acked only after this."""
    await producer.send_and_wait(topic, key.encode(), value, None, None, None)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


async def sink(ctx: PipelineContext, producer: Producer, result: AnalysisResult) -> None:
    """Store a result idempotently (one document per request id), cache it, then publish it.

    The three writes run concurrently; the result is published only once all are durable. The
    published copy also carries the sink's own time."""
    started = time.perf_counter()
    payload = result.model_dump_json().encode()
    document = result_document(result)
    writes = [
        ctx.db[ANALYSIS_RESULTS].update_one(
            {"request_id": result.request_id}, {"$set": document}, upsert=True
        ),
        ctx.store.put(
            result_key(result.request_id, "result.json", result.completed_at),
            payload,
            content_type="application/json",
        ),
    ]
    if ctx.redis is not None:
        writes.append(
            ctx.redis.set(
                f"{ctx.settings.topic_prefix}:result:{result.request_id}",
                payload,
                ex=ctx.settings.result_cache_ttl_s,
            )
        )
    await asyncio.gather(*writes)
    result.timings_ms["sink"] = _ms(started)
    await publish(
        producer, ctx.topics.results, result.request_id, result.model_dump_json().encode()
    )


async def reject(
    ctx: PipelineContext,
    producer: Producer,
    *,
    request_id: str,
    source_id: str,
    stage: str,
    reason: str,
    message: str,
    origin: Origin,
    headers: dict[str, str],
    key: bytes | None,
    object_key: str | None,
    status: str = "rejected",
) -> None:
    """A dead letter with everything needed to replay, and a result so a waiting client learns why."""
    now = datetime.now(UTC)
    letter = DeadLetter(
        request_id=request_id,
        stage=stage,
        reason=reason,
        message=message,
        original_topic=origin.topic,
        original_partition=origin.partition,
        original_offset=origin.offset,
        original_key=key.decode("utf-8", "replace") if key else None,
        original_headers=headers,
        object_key=object_key,
        failed_at=now,
    )
    await publish(producer, ctx.topics.dlq, request_id, letter.model_dump_json().encode())
    await sink(
        ctx,
        producer,
        AnalysisResult(
            request_id=request_id,
            source_id=source_id,
            status=status,  # type: ignore[arg-type]
            completed_at=now,
            error=ErrorInfo(stage=stage, reason=reason, message=message),
        ),
    )
    log.info("%s %s at %s: %s (%s)", status, request_id, stage, reason, message)


def _header_dict(raw: Any) -> dict[str, str]:
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    return {
        str(k): (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in items
    }


async def preprocess(ctx: PipelineContext, producer: Producer, message: Any) -> None:
    received = datetime.now(UTC)
    started = time.perf_counter()
    origin = Origin(topic=message.topic, partition=message.partition, offset=message.offset)
    raw_headers = (
        message.headers.items() if isinstance(message.headers, dict) else (message.headers or [])
    )
    shown = _header_dict(message.headers)
    fallback_id = derived_request_id(origin.topic, origin.partition, origin.offset)
    data: bytes = message.value or b""
    common = {"origin": origin, "headers": shown, "key": message.key}
    as_bytes = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in raw_headers]
    try:
        headers = parse_headers(as_bytes)
    except IntakeError as exc:
        await reject(
            ctx,
            producer,
            request_id=request_id_hint(as_bytes) or fallback_id,
            source_id="unknown",
            stage="preprocess",
            reason=exc.reason,
            message=str(exc),
            object_key=None,
            **common,
        )
        return
    request_id = headers.request_id or fallback_id

    async def refuse(reason: str, message: str, object_key: str | None) -> None:
        await reject(
            ctx,
            producer,
            request_id=request_id,
            source_id=headers.source_id,
            stage="preprocess",
            reason=reason,
            message=message,
            object_key=object_key,
            **common,
        )

    object_key: str | None = None
    if headers.content_type == IMAGE_REF_CONTENT_TYPE:
        try:
            object_key = ImageRef.model_validate_json(data).image_ref
            data = (await ctx.store.get(object_key)).data
        except (ValidationError, ObjectNotFound) as exc:
            await refuse("bad_image_ref", str(exc), object_key)
            return
    try:
        prepared = await asyncio.to_thread(prepare, data, ctx.input_size, ctx.limits)
    except ImageRejected as exc:
        if object_key is None and 0 < len(data) <= ctx.settings.max_image_bytes:
            object_key = (
                await ctx.store.put(upload_key(headers.source_id, request_id, "bin"), data)
            ).key  # kept for inspection and replay
        await refuse(exc.reason, str(exc), object_key)
        return
    image = prepared.image
    if object_key is None:
        object_key = (
            await ctx.store.put(
                upload_key(headers.source_id, request_id, image.format),
                data,
                content_type=image.content_type,
            )
        ).key
    staged = _prepared(headers, request_id, received, origin, prepared, object_key, _ms(started))
    payload = staged.model_dump_json().encode()
    try:
        await publish(producer, ctx.topics.prepared, request_id, payload)
    except MessageSizeTooLargeError:  # e.g. a stage topic declared before the limit was raised
        await refuse(
            "too_large",
            f"the prepared image ({len(payload)} bytes) exceeds the message limit of "
            f"{ctx.topics.prepared}; raise its max.message.bytes to {STAGE_MESSAGE_MAX_BYTES}",
            object_key,
        )


def _prepared(
    headers: InputHeaders,
    request_id: str,
    received: datetime,
    origin: Origin,
    prepared: Any,
    object_key: str,
    took_ms: float,
) -> PreparedImage:
    image = prepared.image
    return PreparedImage(
        request_id=request_id,
        source_id=headers.source_id,
        submitted_at=headers.submitted_at,
        received_at=received,
        options=headers.options,
        origin=origin,
        image={
            "width": image.width,
            "height": image.height,
            "format": image.format,
            "sha256": image.sha256,
            "size_bytes": image.size_bytes,
            "object_key": object_key,
        },
        letterbox=LetterboxInfo(**asdict(prepared.box)),
        timings_ms={"preprocess": took_ms},
        model_input_png=base64.b64encode(prepared.model_input_png).decode(),
    )


async def infer(ctx: PipelineContext, producer: Producer, values: list[bytes]) -> None:
    """One micro-batch: decode, run the model off the event loop, forward per image."""
    assert ctx.models is not None
    items = [PreparedImage.model_validate_json(v) for v in values]
    boxes = [Letterbox(**item.letterbox.model_dump()) for item in items]
    models = ctx.models
    # An operator's live value, else the settings' or the model's operating point.
    default = ctx.live.confidence or models.active.detector.config.confidence

    def run() -> tuple[str, list[list[Detection]]]:  # on the inference thread: decode + model
        images = [model_input(base64.b64decode(item.model_input_png)) for item in items]
        return models.detect_letterboxed(images, boxes, floor)

    floor = min((float(i.options.get("confidence", default)) for i in items), default=default)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        ref, detections = await loop.run_in_executor(ctx.inference_executor, run)
    except Exception as exc:  # a model failure fails these images, never the worker
        log.exception("inference failed for a batch of %d", len(items))
        for item in items:
            await reject(
                ctx,
                producer,
                request_id=item.request_id,
                source_id=item.source_id,
                stage="inference",
                reason="model_error",
                message=repr(exc),
                origin=item.origin,
                headers={},
                key=item.request_id.encode(),
                object_key=item.image.object_key,
                status="failed",
            )
        return
    took = _ms(started)
    name, version = ref.split(":", 1)
    for item, found in zip(items, detections, strict=True):
        threshold = float(item.options.get("confidence", default))
        message = DetectedImage(
            **item.model_dump(exclude={"model_input_png", "timings_ms"}),
            timings_ms=item.timings_ms | {"inference": took, "batch_size": float(len(items))},
            detections=[asdict(d) for d in found if d.confidence >= threshold],
            model={
                "name": name,
                "version": version,
                "backend": ctx.models.backend_name,
                "device": ctx.models.device,
            },
        )
        await publish(
            producer, ctx.topics.detected, item.request_id, message.model_dump_json().encode()
        )


async def analyse(ctx: PipelineContext, producer: Producer, value: bytes) -> None:
    """Positioning + rules, then the durable result; alerts for failed alerting rules."""
    item = DetectedImage.model_validate_json(value)
    started = time.perf_counter()
    rule_set = await ctx.rules.rule_set()
    detections = [Detection(d.class_name, d.role, d.confidence, d.box) for d in item.detections]
    assessment = assess(detections, (item.image.width, item.image.height), rule_set.rules)
    completed = datetime.now(UTC)
    since = item.submitted_at or item.received_at
    result = AnalysisResult(
        request_id=item.request_id,
        source_id=item.source_id,
        status="ok",
        submitted_at=item.submitted_at,
        completed_at=completed,
        image=item.image,
        detections=item.detections,
        positioning=facts_to_dict(assessment.facts),
        verdicts=[asdict(v) for v in assessment.verdicts],
        model=item.model,
        rule_set_version=rule_set.version,
        timings_ms=item.timings_ms | {"analysis": _ms(started)},
        latency_ms=round((completed - since).total_seconds() * 1000, 1),
    )
    await sink(ctx, producer, result)
    for verdict in assessment.failed:
        if "alert" in verdict.actions:
            await publish(
                producer,
                ctx.topics.alerts,
                item.request_id,
                orjson.dumps(alert_payload(verdict, item.request_id, item.source_id)),
            )
