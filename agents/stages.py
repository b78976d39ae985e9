"""What each pipeline stage does with one message (or one batch).

Bad input ends as a dead letter plus a `rejected`/`failed` result. A dependency's failure is
raised, untouched: streams.delivery rewinds the input and reports the outage, so an outage never
turns into dead letters. Nothing here acknowledges anything; streams.delivery does, once a stage
returns."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
from aiokafka.errors import MessageSizeTooLargeError
from pydantic import ValidationError

from core import worker_metrics as metrics
from core.alerts import Frame, alert_events
from core.imaging import DecodedImage, ImageRejected
from core.imaging.privacy import Concealed, blur_original
from core.models.class_map import ROLES
from core.models.letterbox import Letterbox
from core.models.manager import ModelBudgetError, ModelMismatchError
from core.models.manifest import ModelNotFound
from core.models.types import Detection
from core.pipeline.assess import evaluate_rules
from core.pipeline.intake import (
    InputHeaders,
    IntakeError,
    derived_request_id,
    parse_headers,
    request_id_hint,
)
from core.pipeline.prepare import model_input, prepare
from core.positioning import SceneFacts, analyze
from core.positioning.serialize import facts_to_dict
from core.rules import Verdict
from core.tracking import follow_frame
from infra import tracing
from infra.failures import is_fatal
from infra.logging_setup import bind_context
from infra.object_store import InvalidObjectKey, ObjectNotFound
from infra.object_store.keys import upload_key
from schemas.messages import (
    IMAGE_REF_CONTENT_TYPE,
    AnalysisResult,
    DeadLetter,
    ErrorInfo,
    ImageRef,
    PrivacyOut,
)
from schemas.stages import (
    DetectedImage,
    LetterboxInfo,
    Origin,
    PreparedImage,
    pack_prepared,
    unpack_prepared,
)
from schemas.topics import STAGE_MESSAGE_MAX_BYTES, UNNAMED_SOURCES, partition_key
from streams.context import PipelineContext

log = logging.getLogger(__name__)
T = TypeVar("T")


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


async def publish(
    producer: Producer,
    topic: str,
    key: str,
    value: bytes,
    image: tracing.ImageTrace | None = None,
) -> None:
    """Produce and wait for the broker's acknowledgement: the input is acked only after this.
    Under `image` (default: the current span), whose context the message's headers then carry
    (the aiokafka instrumentation adds `traceparent`)."""
    if image is None:
        with tracing.span("publish", topic=topic):
            await producer.send_and_wait(topic, key.encode(), value, None, None, None)
        return
    with tracing.use(image), tracing.child(image, "publish", topic=topic):
        await producer.send_and_wait(topic, key.encode(), value, None, None, None)


def _key(item: PreparedImage | DetectedImage) -> str:
    """A stage message's key: its source's frames stay in one partition, in order."""
    return partition_key(item.source_id, item.request_id).decode()


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


async def sink(
    ctx: PipelineContext,
    producer: Producer,
    results: list[AnalysisResult],
    images: list[tracing.ImageTrace] | None = None,
) -> None:
    """Store results (idempotently, one per request id), then publish what is stored. `images`:
    the results' traces (default: the current span's), each write a span in every one.

    A redelivered input republishes the result its first delivery stored, unchanged. A failure
    of any store raises before anything is published: the inputs are redelivered and complete
    the same results (never one stored and unpublished for good, never one published unstored).
    """
    started = time.perf_counter()
    if images is None:
        stored = await ctx.results.save(results, tracing.span)
        traced: list[tracing.ImageTrace | None] = [None] * len(stored)
    else:
        stored = await ctx.results.save(results, lambda name: tracing.stage(name, images))
        traced = list(images)
    await asyncio.gather(
        *(
            publish(producer, ctx.topics.results, r.request_id, r.model_dump_json().encode(), i)
            for r, i in zip(stored, traced, strict=True)
        )
    )
    metrics.STAGE_SECONDS.labels("sink").observe(time.perf_counter() - started)
    for r in stored:
        metrics.RESULTS.labels(r.status).inc()


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
    metrics.DEAD_LETTERS.labels(stage, reason).inc()
    await sink(
        ctx, producer, [_unanalysed(request_id, source_id, status, stage, reason, message, now)]
    )
    log.info("%s %s at %s: %s (%s)", status, request_id, stage, reason, message)


def _unanalysed(
    request_id: str,
    source_id: str,
    status: str,
    stage: str,
    reason: str,
    message: str,
    now: datetime,
) -> AnalysisResult:
    """The result of an input that was not analysed, saying where and why."""
    return AnalysisResult(
        request_id=request_id,
        source_id=source_id,
        status=status,  # type: ignore[arg-type]
        completed_at=now,
        error=ErrorInfo(stage=stage, reason=reason, message=message),
        trace_id=tracing.trace_id_hex(),
    )


async def expire(
    ctx: PipelineContext,
    producer: Producer,
    request_id: str,
    source_id: str,
    age_s: float,
    max_age_s: float,
) -> None:
    """An `expired` result for a frame too old to be worth analysing (its source's max_age_s):
    no dead letter, nothing to replay; the camera's newer frames are what count."""
    message = (
        f"the frame was {age_s:.0f} s old when the pipeline reached it; source {source_id} "
        f"analyses frames up to {max_age_s:g} s old"
    )
    expired = _unanalysed(
        request_id, source_id, "expired", "preprocess", "expired", message, datetime.now(UTC)
    )
    await sink(ctx, producer, [expired])
    log.info("expired %s: %s", request_id, message)


# What a client reads about a claim check that leads nowhere (never the exception's own text).
_BAD_REF = {
    ValidationError: "the image reference is not a JSON object with an image_ref",
    InvalidObjectKey: "the image reference names no object this system stores",
    ObjectNotFound: "the referenced image does not exist (or no longer)",
}


def poison_message(stage: str, failures: int) -> str:
    """What a client reads about an input the stage failed on for no reason it can name (the
    details are in the worker's log, never in a result)."""
    return f"the {stage} stage failed on this input {failures} times; it was set aside for replay"


def _header_dict(raw: Any) -> dict[str, str]:
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    return {
        str(k): (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in items
    }


@dataclass(frozen=True, slots=True)
class _Input:
    """An images-topic message as the preprocess stage sees it."""

    origin: Origin
    headers: list[tuple[str, bytes]]
    shown: dict[str, str]
    key: bytes | None
    data: bytes
    produced_at: datetime | None  # the record's Kafka timestamp

    @classmethod
    def of(cls, message: Any) -> _Input:
        raw = message.headers.items() if isinstance(message.headers, dict) else message.headers
        headers = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in raw or []]
        return cls(
            Origin(topic=message.topic, partition=message.partition, offset=message.offset),
            headers,
            _header_dict(message.headers),
            message.key,
            message.value or b"",
            _produced_at(getattr(message, "timestamp", None)),
        )

    @property
    def fallback_id(self) -> str:
        return derived_request_id(self.origin.topic, self.origin.partition, self.origin.offset)


def _produced_at(timestamp: float | None) -> datetime | None:
    """Faust's message timestamp (seconds; 0 or None when the record has none)."""
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


async def _keep_original(
    ctx: PipelineContext, source_id: str, request_id: str, data: bytes, image_format: str = "bin"
) -> str | None:
    """Keep the bytes as received (for inspection and replay), when there are any to keep. With
    MUGPOS_PRIVACY_BLUR they are kept blurred, and only when they decode: bytes that cannot be
    searched for faces might still show someone to a more forgiving decoder."""
    if not 0 < len(data) <= ctx.settings.max_image_bytes:
        return None
    if ctx.settings.privacy_blur == "faces":
        try:
            data = (await _conceal(ctx, data)).data
        except Exception as exc:  # whatever the decoder throws: a poison input may be why
            if is_fatal(exc):
                raise
            log.info("%s is not kept: it cannot be searched for faces", request_id)
            return None
    return (await ctx.store.put(upload_key(source_id, request_id, image_format), data)).key


async def _conceal(
    ctx: PipelineContext, data: bytes, seen: DecodedImage | None = None
) -> Concealed:
    """The picture with its faces blurred (core.imaging.privacy), on the decode pool."""
    with tracing.span("privacy blur"):
        return await asyncio.get_running_loop().run_in_executor(
            ctx.decode_executor, blur_original, data, ctx.limits, seen
        )


@dataclass(slots=True)
class Admitted:
    """An input that passed intake: its stage record and the letterboxed pixels for the model."""

    record: PreparedImage
    pixels: np.ndarray
    model_input_png: bytes = b""  # the pixels for the inference stage's topic (split only)
    trace: tracing.ImageTrace = tracing.OFF  # this image's span in this worker
    ready_ns: int = 0  # when it was ready for the model (the start of its batch wait)


async def take_in(
    ctx: PipelineContext,
    producer: Producer,
    message: Any,
    *,
    for_topic: bool,
    image: tracing.ImageTrace = tracing.OFF,
) -> Admitted | None:
    """Validate, decode and letterbox one input and keep the original; None when it was refused
    (a dead letter plus a `rejected` result). With `for_topic` the record carries the pixels as
    PNG for the inference stage's topic; a fused worker hands them on in memory. `image`: its
    trace, in which this is the `intake` span (validation, the claim check, `decode`, keeping
    the original).

    A dependency's failure raises (the input is redelivered), see streams.delivery."""
    with tracing.use(image), tracing.child(image, "intake"):
        admitted = await _intake(ctx, producer, message, for_topic)
    if admitted is not None:
        admitted.trace = image
        if image.recording:
            image.set(request_id=admitted.record.request_id, source_id=admitted.record.source_id)
            admitted.ready_ns = time.time_ns()
    return admitted


async def _intake(
    ctx: PipelineContext, producer: Producer, message: Any, for_topic: bool
) -> Admitted | None:
    received = datetime.now(UTC)
    started = time.perf_counter()
    item = _Input.of(message)
    common = {"origin": item.origin, "headers": item.shown, "key": item.key}
    try:
        headers = parse_headers(item.headers)
    except IntakeError as exc:
        request_id = request_id_hint(item.headers) or item.fallback_id
        await reject(
            ctx,
            producer,
            request_id=request_id,
            source_id="unknown",
            stage="preprocess",
            reason=exc.reason,
            message=str(exc),
            object_key=await _keep_original(ctx, "unknown", request_id, item.data),
            **common,
        )
        return None
    request_id = headers.request_id or item.fallback_id
    bind_context(request_id=request_id)  # this input's task: its lines name it
    max_age_s = (await ctx.sources.setup(headers.source_id)).max_age_s
    frame_at = headers.captured_at or headers.submitted_at or item.produced_at
    if max_age_s is not None and frame_at is not None:
        age = (received - frame_at).total_seconds()
        if age > max_age_s:
            await expire(ctx, producer, request_id, headers.source_id, age, max_age_s)
            return None

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

    data = item.data
    object_key: str | None = None
    privacy: PrivacyOut | None = None  # set by an API that stored its claim check blurred
    if headers.content_type == IMAGE_REF_CONTENT_TYPE:
        try:
            ref = ImageRef.model_validate_json(data)
            object_key, privacy = ref.image_ref, ref.privacy
            data = (await ctx.store.get(object_key)).data
        except (ValidationError, ObjectNotFound, InvalidObjectKey) as exc:
            await refuse("bad_image_ref", _BAD_REF[type(exc)], object_key)
            return None
    loop = asyncio.get_running_loop()
    try:
        with tracing.span("decode", bytes=len(data)):
            prepared = await loop.run_in_executor(
                ctx.decode_executor,
                functools.partial(prepare, data, ctx.input_size, ctx.limits, encode=for_topic),
            )
    except ImageRejected as exc:
        if object_key is None:
            object_key = await _keep_original(ctx, headers.source_id, request_id, data)
        await refuse(exc.reason, str(exc), object_key)
        return None
    image = prepared.image
    kept = None if object_key else data  # what to store: a claim check is stored already
    if ctx.settings.privacy_blur == "faces" and privacy is None:
        # The model reads the unblurred pixels (a mug in a hand near a face stays visible);
        # only the kept original is blurred. A claim check someone stored unblurred is replaced.
        concealed = await _conceal(ctx, data, image)
        privacy = PrivacyOut(blurred="faces", regions=concealed.regions)
        if object_key is None or concealed.regions:
            kept = concealed.data
    if kept is not None:
        object_key = (
            await ctx.store.put(
                object_key or upload_key(headers.source_id, request_id, image.format),
                kept,
                content_type=image.content_type,
            )
        ).key
    took = _ms(started)
    metrics.STAGE_SECONDS.labels("preprocess").observe(took / 1000)
    record = _prepared(
        headers, request_id, received, item.origin, prepared, object_key, took, privacy
    )
    return Admitted(record, prepared.pixels, prepared.model_input_png)


async def preprocess(ctx: PipelineContext, producer: Producer, message: Any) -> None:
    """The preprocess stage of a split deployment: intake, then the inference stage's topic
    (whose message headers carry the image's trace context on)."""
    image = tracing.image_trace(message, "preprocess")
    try:
        with tracing.use(image):
            await _preprocess(ctx, producer, message, image)
    finally:
        image.end()


async def _preprocess(
    ctx: PipelineContext, producer: Producer, message: Any, image: tracing.ImageTrace
) -> None:
    admitted = await take_in(ctx, producer, message, for_topic=True, image=image)
    if admitted is None:
        return
    record = admitted.record
    payload = pack_prepared(record, admitted.model_input_png)
    try:
        await publish(producer, ctx.topics.prepared, _key(record), payload)
    except MessageSizeTooLargeError:  # e.g. a stage topic declared before the limit was raised
        await reject(
            ctx,
            producer,
            request_id=record.request_id,
            source_id=record.source_id,
            stage="preprocess",
            reason="too_large",
            message=f"the prepared image ({len(payload)} bytes) exceeds the message limit of "
            f"{ctx.topics.prepared}; raise its max.message.bytes to {STAGE_MESSAGE_MAX_BYTES}",
            origin=record.origin,
            headers=_header_dict(message.headers),
            key=message.key,
            object_key=record.image.object_key,
        )


async def intake_poison(
    ctx: PipelineContext, producer: Producer, stage: str, message: Any, failures: int
) -> None:
    """An images-topic input a stage (preprocess, or a fused worker's `pipeline`) kept failing
    on: keep its bytes, dead-letter it."""
    await _in_image_trace(
        message, stage, lambda: _intake_poison(ctx, producer, stage, message, failures)
    )


async def _in_image_trace(message: Any, stage: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` for one input inside that input's image span (child of its traceparent)."""
    image = tracing.image_trace(message, stage)
    try:
        with tracing.use(image):
            await work()
    finally:
        image.end()


async def _intake_poison(
    ctx: PipelineContext, producer: Producer, stage: str, message: Any, failures: int
) -> None:
    item = _Input.of(message)
    request_id = request_id_hint(item.headers) or item.fallback_id
    source_id = "unknown"
    with contextlib.suppress(IntakeError):
        source_id = parse_headers(item.headers).source_id
    await reject(
        ctx,
        producer,
        request_id=request_id,
        source_id=source_id,
        stage=stage,
        reason="processing_error",
        message=poison_message(stage, failures),
        origin=item.origin,
        headers=item.shown,
        key=item.key,
        object_key=await _keep_original(ctx, source_id, request_id, item.data),
        status="failed",
    )


def _prepared(
    headers: InputHeaders,
    request_id: str,
    received: datetime,
    origin: Origin,
    prepared: Any,
    object_key: str,
    took_ms: float,
    privacy: PrivacyOut | None,
) -> PreparedImage:
    image = prepared.image
    return PreparedImage(
        request_id=request_id,
        source_id=headers.source_id,
        submitted_at=headers.submitted_at,
        captured_at=headers.captured_at,
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
        privacy=privacy,
        letterbox=LetterboxInfo(**asdict(prepared.box)),
        timings_ms={"preprocess": took_ms},
    )


async def stage_poison(
    ctx: PipelineContext, producer: Producer, stage: str, message: Any, failures: int
) -> None:
    """A stage-topic message the stage kept failing on: dead-letter it under its request id."""
    await _in_image_trace(
        message, stage, lambda: _stage_poison(ctx, producer, stage, message, failures)
    )


async def _stage_poison(
    ctx: PipelineContext, producer: Producer, stage: str, message: Any, failures: int
) -> None:
    try:
        item: PreparedImage | DetectedImage = (
            unpack_prepared(message.value)[0]
            if stage == "inference"
            else DetectedImage.model_validate_json(message.value)
        )
        request_id, source_id, origin = item.request_id, item.source_id, item.origin
        object_key = item.image.object_key
    except ValueError:  # not even readable (ValidationError is one): answer under its key
        request_id = (message.key or b"").decode("utf-8", "replace") or derived_request_id(
            message.topic, message.partition, message.offset
        )
        source_id, object_key = "unknown", None
        origin = Origin(topic=message.topic, partition=message.partition, offset=message.offset)
    await reject(
        ctx,
        producer,
        request_id=request_id,
        source_id=source_id,
        stage=stage,
        reason="processing_error",
        message=poison_message(stage, failures),
        origin=origin,
        headers={},
        key=request_id.encode(),
        object_key=object_key,
        status="failed",
    )


def _run_model(
    ctx: PipelineContext,
    pixels: list[np.ndarray],
    boxes: list[Letterbox],
    floor: float,
    ref: str | None,
) -> tuple[str, list[list[Detection]]]:
    assert ctx.models is not None
    return ctx.models.detect_letterboxed(pixels, boxes, floor, ref=ref)


_unservable: set[tuple[str, str]] = set()  # (source, model) pairs already logged


async def _model_of(ctx: PipelineContext, source_id: str) -> str | None:
    """The model version a source asks for, loaded; None: the worker's active model (also when
    the source's cannot serve here: not in any model source, or made for another input size,
    which is logged once)."""
    assert ctx.models is not None
    ref = (await ctx.sources.setup(source_id)).model
    if ref is None or ref == ctx.models.active.ref:
        return None
    try:
        return (await ctx.models.get(ref, ctx.input_size)).ref
    except (ModelNotFound, ModelMismatchError, ModelBudgetError) as exc:
        if (source_id, ref) not in _unservable:
            _unservable.add((source_id, ref))
            log.warning(
                "source %s asks for model %s, which cannot serve here: %s", source_id, ref, exc
            )
        return None


async def detect(
    ctx: PipelineContext, producer: Producer, batch: list[Admitted]
) -> list[tuple[DetectedImage, tracing.ImageTrace]]:
    """One micro-batch through the model, off the event loop; each detection with its image's
    trace. In each recorded image's trace: `batch wait` (ready until the model starts) and
    `inference` (batch size, model, device; linked to every image span of the batch). Images of
    a source that names its own model (`SourceSpec.model`) run through that one.

    When the batch fails, each image runs alone: only an image the model fails on by itself is
    dead-lettered (`model_error`), the others go on. A failure that leaves the process unusable
    (infra.failures.is_fatal) is raised: the worker stops and its inputs move elsewhere."""
    assert ctx.models is not None
    # An operator's live value, else the settings' or the model's operating point.
    default = ctx.live.confidence or ctx.models.active.detector.config.confidence
    items = [a.record for a in batch]
    floor = min((float(i.options.get("confidence", default)) for i in items), default=default)
    loop = asyncio.get_running_loop()
    models = ctx.models
    refs = {s: await _model_of(ctx, s) for s in dict.fromkeys(i.source_id for i in items)}
    groups: dict[str | None, list[Admitted]] = {}
    for admitted in batch:
        groups.setdefault(refs[admitted.record.source_id], []).append(admitted)

    async def run(part: list[Admitted], ref: str | None) -> tuple[str, list[list[Detection]]]:
        pixels = [a.pixels for a in part]
        boxes = [Letterbox(**a.record.letterbox.model_dump()) for a in part]
        with tracing.stage(
            "inference",
            (a.trace for a in part),
            links=True,
            batch_size=len(part),
            model=ref or models.active.ref,
            backend=models.backend_name,
            device=models.device,
        ):
            return await loop.run_in_executor(
                ctx.inference_executor, _run_model, ctx, pixels, boxes, floor, ref
            )

    now_ns = time.time_ns()
    for admitted in batch:
        if admitted.ready_ns:
            tracing.interval(admitted.trace, "batch wait", admitted.ready_ns, now_ns)
    started = time.perf_counter()
    outcomes: list[tuple[PreparedImage, str, list[Detection], tracing.ImageTrace]] = []
    for ref, part in groups.items():
        outcomes += await _detect_part(ctx, producer, part, ref, run)
    took = _ms(started)
    metrics.STAGE_SECONDS.labels("inference").observe(took / 1000)
    return [
        (_detected(ctx, item, ref, dets, default, took, len(batch)), image)
        for item, ref, dets, image in outcomes
    ]


async def _detect_part(
    ctx: PipelineContext,
    producer: Producer,
    batch: list[Admitted],
    ref: str | None,
    run: Callable[[list[Admitted], str | None], Awaitable[tuple[str, list[list[Detection]]]]],
) -> list[tuple[PreparedImage, str, list[Detection], tracing.ImageTrace]]:
    """The images of one model: together, else (when that fails) each alone."""
    outcomes: list[tuple[PreparedImage, str, list[Detection], tracing.ImageTrace]] = []
    try:
        used, found = await run(batch, ref)
        outcomes = [(a.record, used, dets, a.trace) for a, dets in zip(batch, found, strict=True)]
    except Exception as exc:
        if is_fatal(exc):
            raise
        log.warning("inference failed for a batch of %d; running each image alone", len(batch))
        for admitted in batch:
            try:
                used, (dets,) = await run([admitted], ref)
                outcomes.append((admitted.record, used, dets, admitted.trace))
            except Exception as alone:
                if is_fatal(alone):
                    raise
                log.error("the model failed on %s", admitted.record.request_id, exc_info=alone)
                with tracing.use(admitted.trace):
                    await _model_error(ctx, producer, admitted.record)
    return outcomes


def _value(message: Any) -> bytes:
    """A stage message's value (a bare value, as a test hands it, is its own)."""
    return message if isinstance(message, bytes | bytearray) else message.value


def _published_ns(message: Any) -> int:
    """When a stage message was produced (its Kafka timestamp), in ns; 0 when unknown."""
    stamp = getattr(message, "timestamp", None)
    return int(stamp * 1e9) if stamp else 0


async def infer(ctx: PipelineContext, producer: Producer, messages: list[Any]) -> None:
    """The inference stage of a split deployment: stage records in, detections out; each
    message's trace context (its headers) goes on with its detections."""
    images = [tracing.image_trace(m, "inference") for m in messages]
    try:
        await _infer(ctx, producer, messages, images)
    finally:
        for image in images:
            image.end()


async def _infer(
    ctx: PipelineContext, producer: Producer, messages: list[Any], images: list[tracing.ImageTrace]
) -> None:
    taken = time.perf_counter()
    frames = [unpack_prepared(_value(m)) for m in messages]
    items = [item for item, _ in frames]
    loop = asyncio.get_running_loop()
    pixels = await asyncio.gather(
        *(loop.run_in_executor(ctx.decode_executor, model_input, png) for _, png in frames)
    )
    metrics.BATCH_WAIT_SECONDS.observe(time.perf_counter() - taken)
    batch = []
    for item, p, message, image in zip(items, pixels, messages, images, strict=True):
        image.set(request_id=item.request_id, source_id=item.source_id)
        # Its batch wait: from the preprocess stage's publish (the topic and this take included).
        batch.append(Admitted(item, p, trace=image, ready_ns=_published_ns(message)))
    detected = await detect(ctx, producer, batch)
    await asyncio.gather(
        *(
            publish(producer, ctx.topics.detected, _key(d), d.model_dump_json().encode(), i)
            for d, i in detected
        )
    )


async def _model_error(ctx: PipelineContext, producer: Producer, item: PreparedImage) -> None:
    await reject(
        ctx,
        producer,
        request_id=item.request_id,
        source_id=item.source_id,
        stage="inference",
        reason="model_error",
        message="the model failed on this image; it was set aside for replay",
        origin=item.origin,
        headers={},
        key=item.request_id.encode(),
        object_key=item.image.object_key,
        status="failed",
    )


def _detected(
    ctx: PipelineContext,
    item: PreparedImage,
    ref: str,
    found: list[Detection],
    default: float,
    took: float,
    batch_size: int,
) -> DetectedImage:
    assert ctx.models is not None
    threshold = float(item.options.get("confidence", default))
    name, version = ref.split(":", 1)
    return DetectedImage(
        **item.model_dump(exclude={"timings_ms"}),
        timings_ms=item.timings_ms | {"inference": took, "batch_size": float(batch_size)},
        detections=[asdict(d) for d in found if d.confidence >= threshold],
        model={
            "name": name,
            "version": version,
            "backend": ctx.models.backend_name,
            "device": ctx.models.device,
            "roles": ctx.models.roles_of(ref),
        },
    )


async def conclude(
    ctx: PipelineContext,
    producer: Producer,
    items: list[DetectedImage],
    images: list[tracing.ImageTrace] | None = None,
) -> None:
    """Positioning + rules for a batch, one batched sink; the alert events it makes (core.alerts).
    `images`: the items' traces (spans `positioning`, `rules`, the sink's writes, `publish`;
    each result carries its trace id)."""
    images = images or [tracing.OFF] * len(items)
    rule_set = await ctx.rules.rule_set()
    rules_by_id = {r.rule_id: r for r in rule_set.rules}
    setups = {
        sid: await ctx.sources.setup(sid) for sid in dict.fromkeys(i.source_id for i in items)
    }
    # Named sources keep a state between frames (their alerts); registered ones are tracked
    # over time too. A picture of no particular source is judged alone.
    trackers = await ctx.states.trackers(s for s in setups if s not in UNNAMED_SOURCES)
    results: list[AnalysisResult] = []
    alerts: list[tuple[str, bytes, tracing.ImageTrace]] = []
    dropped: list[str] = []  # originals of passing results, with MUGPOS_KEEP_ORIGINALS=failures
    for item, image in zip(items, images, strict=True):
        started = time.perf_counter()
        setup = setups[item.source_id]
        size = (item.image.width, item.image.height)
        detections = [Detection(d.class_name, d.role, d.confidence, d.box) for d in item.detections]
        with tracing.child(image, "positioning", detections=len(detections)):
            facts = analyze(detections, size, setup.calibration, unseen=_unseen(item))
        rules = setup.rules(rule_set.rules)
        tracker = trackers.get(item.source_id)
        state = tracker.state if tracker is not None else None
        fresh = state is not None and not state.seen(item.request_id)
        frame_at = _frame_time(item)
        tracked: dict[int, str] | None = None
        with tracing.child(image, "rules", rules=len(rules)):
            assessment = evaluate_rules(facts, rules)
            tracks: list[dict[str, Any]] = []
            if tracker is not None and setup.version:
                followed = follow_frame(
                    tracker,
                    item.request_id,
                    facts,
                    assessment.verdicts,
                    rules_by_id,
                    size,
                    frame_at,
                )
                verdicts, tracks = followed.verdicts, followed.tracks
                tracked, frame_at = followed.tracked, followed.at
            else:  # judged alone: the picture's own outcome is the one in force
                verdicts = [replace(v, instant_passed=v.passed) for v in assessment.verdicts]
                if state is not None:
                    frame_at = max(frame_at, state.frame_at or frame_at)
                    if fresh:
                        state.frame_at = frame_at
                        state.remember(item.request_id)
            events = alert_events(
                Frame(item.source_id, item.request_id, frame_at, item.captured_at),
                verdicts,
                rules_by_id,
                state,
                tracked,
                fresh=fresh,
                cooldown_s=ctx.settings.alert_cooldown_s,
                source_webhooks=setup.webhooks,
            )
        meta = item.image
        if (
            ctx.settings.keep_originals == "failures"
            and meta.object_key
            and _passes(facts, verdicts)
        ):
            dropped.append(meta.object_key)
            meta = meta.model_copy(update={"object_key": None})
        completed = datetime.now(UTC)
        since = item.submitted_at or item.received_at
        results.append(
            AnalysisResult(
                request_id=item.request_id,
                source_id=item.source_id,
                status="ok",
                submitted_at=item.submitted_at,
                completed_at=completed,
                image=meta,
                privacy=item.privacy,
                detections=item.detections,
                positioning=facts_to_dict(assessment.facts),
                verdicts=[asdict(v) for v in verdicts],
                model=item.model,
                rule_set_version=rule_set.version,
                source_version=setup.version,
                captured_at=item.captured_at,
                tracks=tracks,
                timings_ms=item.timings_ms | {"analysis": _took_analysis(started)},
                latency_ms=round((completed - since).total_seconds() * 1000, 1),
                trace_id=image.trace_id,
            )
        )
        alerts += [(_key(item), event.model_dump_json().encode(), image) for event in events]
    await ctx.states.save(trackers)  # before the results: a redone batch finds its frames applied
    if results:
        await sink(ctx, producer, results, images)
    # Only once the results (which no longer point at them) are stored: a failure redoes the batch.
    await asyncio.gather(*(ctx.store.delete(key) for key in dropped))
    await asyncio.gather(
        *(publish(producer, ctx.topics.alerts, key, data, i) for key, data, i in alerts)
    )


def _unseen(item: DetectedImage) -> frozenset[str]:
    """The roles the item's model has no class for (none when it does not say)."""
    if item.model is None or item.model.roles is None:
        return frozenset()
    return frozenset(ROLES) - set(item.model.roles)


def _passes(facts: SceneFacts, verdicts: list[Verdict]) -> bool:
    """Nothing to show anyone: no rule failed and no mug fails a placement check."""
    return all(v.passed is not False for v in verdicts) and not any(m.failing for m in facts.mugs)


def _frame_time(item: DetectedImage) -> float:
    """When the picture was taken, as well as the pipeline knows (seconds since the epoch)."""
    return (item.captured_at or item.submitted_at or item.received_at).timestamp()


def _took_analysis(started: float) -> float:
    took = _ms(started)
    metrics.STAGE_SECONDS.labels("analysis").observe(took / 1000)
    return took


async def analyse(ctx: PipelineContext, producer: Producer, messages: list[Any]) -> None:
    """The analysis stage of a split deployment (each message's trace goes on to its result)."""
    images = [tracing.image_trace(m, "analysis") for m in messages]
    try:
        items = [DetectedImage.model_validate_json(_value(m)) for m in messages]
        for item, image in zip(items, images, strict=True):
            image.set(request_id=item.request_id, source_id=item.source_id)
        await conclude(ctx, producer, items, images)
    finally:
        for image in images:
            image.end()


async def run_fused(
    ctx: PipelineContext,
    producer: Producer,
    chunks: list[list[Any]],
    on_batch: Callable[[int, float], None] | None = None,
) -> None:
    """A fused worker's whole pipeline for micro-batches of images-topic messages, in process:
    intake (decoding in parallel on the decode pool), one model run per micro-batch, analysis
    and one batched sink each. No stage topics, no PNG round trip. The stages overlap: while the
    model runs micro-batch k, micro-batch k+1 is decoded and k-1 is analysed and stored. The
    first failure cancels the rest and is raised: the caller's ledger redoes the whole call.
    `on_batch(size, ms)` is told each model run."""
    taken = time.perf_counter()
    pending: set[asyncio.Future] = set()

    def start(coro: Awaitable[Any]) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        pending.add(task)
        task.add_done_callback(pending.discard)
        return task

    images: list[tracing.ImageTrace] = []

    async def intake(messages: list[Any]) -> list[Admitted]:
        traces = [tracing.image_trace(m, "pipeline") for m in messages]
        images.extend(traces)
        taken = await all_or_none(
            take_in(ctx, producer, m, for_topic=False, image=t)
            for m, t in zip(messages, traces, strict=True)
        )
        for admitted, image in zip(taken, traces, strict=True):
            if admitted is None:  # refused: its dead letter and result are out
                image.end()
        return [a for a in taken if a is not None]

    async def conclude_batch(detected: list[tuple[DetectedImage, tracing.ImageTrace]]) -> None:
        done = [i for _, i in detected]
        try:
            await conclude(ctx, producer, [d for d, _ in detected], done)
        finally:
            for image in done:
                image.end()

    try:
        next_intake = start(intake(chunks[0])) if chunks else None
        concluding: asyncio.Future | None = None
        for k in range(len(chunks)):
            assert next_intake is not None
            admitted = await next_intake
            next_intake = start(intake(chunks[k + 1])) if k + 1 < len(chunks) else None
            if not admitted:
                continue
            started = time.perf_counter()
            metrics.BATCH_WAIT_SECONDS.observe(started - taken)
            detected = await detect(ctx, producer, admitted)
            if on_batch is not None:
                on_batch(len(admitted), _ms(started))
            if concluding is not None:
                await concluding
            concluding = start(conclude_batch(detected))
        if concluding is not None:
            await concluding
    finally:
        await cancel_all(pending)
        for image in images:  # those the model set aside, or a take given back
            image.end()


async def all_or_none(aws: Iterable[Awaitable[T]]) -> list[T]:
    """`asyncio.gather`, but the first failure cancels the others before it is raised (gather
    leaves them running: side effects after the caller gave the inputs back)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        await cancel_all(tasks)
        raise


async def cancel_all(tasks: Iterable[asyncio.Future]) -> None:
    """Cancel what still runs and collect every outcome, so that a task that already failed
    (an intake that met the same outage) is not reported as never retrieved."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
