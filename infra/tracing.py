"""Tracing (OpenTelemetry): one trace per image, from whoever publishes it to its result.

`setup(settings, service)` installs a process's tracer provider once: OTLP over HTTP when
MUGPOS_OTEL_ENDPOINT is set, JSON lines when MUGPOS_OTEL_FILE is set, nothing at all otherwise
(tracing off: no provider, no instrumentation, no trace ids, no headers added). With it come the
maintained instrumentations of the clients the process uses: aiokafka (a producer span per send
and the W3C `traceparent`/`tracestate` headers on every message produced, a receive span per
record consumed), pymongo (motor), botocore (S3/R2), redis; `instrument_app` adds FastAPI's.

Sampling is parent-based: a caller's `traceparent` decides (sampled: recorded everywhere
downstream, unsampled: nowhere). A trace started here is recorded with MUGPOS_OTEL_SAMPLE_RATIO,
but only a request or an image starts one: a driver call or a consumer poll outside any of them
(a heartbeat's write, a fetch of many records) is never a trace of its own.

The pipeline's own spans are made only where no instrumentation exists, and only for recorded
images: `ImageTrace` carries one image's span through a worker (a non-recording one when it is
not sampled, so its trace id still reaches the result and the next hop), `child` and `stage`
make a stage's span under one image or under every recorded image of a batch.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from core.config import Settings
from core.release import installed_version

log = logging.getLogger(__name__)

SERVICE_API = "mugpos-api"
SERVICE_WORKER = "mugpos-worker"
SERVICE_CLI = "mugpos-cli"
# Message headers the trace context travels in (W3C Trace Context), beside request-id & co.
TRACE_HEADERS = ("traceparent", "tracestate")
# Requests that are no one's work: probes and scrapes never start a trace.
EXCLUDED_URLS = "/health$,/ready$,/metrics$,/healthz$,/readyz$"
_FILE_FLUSH_MS = 500  # the file exporter's batch delay: the demo reads its spans soon after

_provider: TracerProvider | None = None  # once setup() installed one
_lock = threading.Lock()


def wanted(settings: Settings) -> bool:
    """Whether the settings turn tracing on (an OTLP endpoint or a span file)."""
    return bool(settings.otel_endpoint or settings.otel_file)


def enabled() -> bool:
    """Whether this process traces (setup() installed a provider)."""
    return _provider is not None


def setup(
    settings: Settings,
    service: str,
    *,
    instance_id: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> bool:
    """Install this process's tracer provider, exporters, sampler and instrumentations; once per
    process (later calls change nothing). False when the settings leave tracing off."""
    global _provider
    if not wanted(settings):
        return False
    with _lock:
        if _provider is not None:
            return True
        resource = {
            "service.version": installed_version(),
            "service.instance.id": instance_id or f"{socket.gethostname()}-{os.getpid()}",
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
            **(attributes or {}),
        }
        provider = _provider_for(
            settings, service, resource, _RootSampler(settings.otel_sample_ratio)
        )
        trace.set_tracer_provider(provider)
        _provider = provider
        _instrument(provider)
        return True


def _provider_for(settings: Settings, service: str, resource: Mapping[str, Any], root: Sampler):
    from opentelemetry.sdk.resources import Resource

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": service, "service.namespace": "mugpos", **resource}
        ),
        sampler=ParentBased(root=root),
    )
    if settings.otel_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Headers, timeout, TLS: the exporter's standard OTEL_EXPORTER_OTLP_* variables.
        exporter = OTLPSpanExporter(endpoint=f"{settings.otel_endpoint}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if settings.otel_file:
        provider.add_span_processor(
            BatchSpanProcessor(
                JsonLinesExporter(settings.otel_file), schedule_delay_millis=_FILE_FLUSH_MS
            )
        )
    return provider


def client_provider(settings: Settings, service: str = SERVICE_CLI) -> TracerProvider | None:
    """A provider of its own for a publishing client inside a process that does not trace
    (the demo's Kafka client): not installed globally, nothing instrumented; the client starts
    its spans from it and puts their context in its messages with `inject`. None when off."""
    if not wanted(settings):
        return None
    return _provider_for(
        settings,
        service,
        {"process.pid": os.getpid()},
        TraceIdRatioBased(settings.otel_sample_ratio),
    )


def _instrument(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (
        AIOKafkaInstrumentor(),
        PymongoInstrumentor(),
        BotocoreInstrumentor(),
        RedisInstrumentor(),
    ):
        try:
            instrumentor.instrument(tracer_provider=provider)
        except Exception:  # a client that cannot be instrumented is traced less, never broken
            log.warning("could not install %s", type(instrumentor).__name__, exc_info=True)


def instrument_app(app: Any) -> None:
    """FastAPI's server spans (the upload's span is the parent of its Kafka message)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],  # the ASGI body's chunks: noise in an image's trace
    )


def flush(timeout_s: float = 5.0) -> None:
    """Export what is finished (e.g. before a worker stops)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


def shutdown() -> None:
    """Flush and stop the exporters (also done at interpreter exit)."""
    global _provider
    with _lock:
        if _provider is not None:
            _provider.shutdown()
            _provider = None


# --- Sampling --------------------------------------------------------------------------------


def sampler(ratio: float) -> Sampler:
    """Parent-based; a root is recorded with `ratio` when it is a request or an image."""
    return ParentBased(root=_RootSampler(ratio))


class _RootSampler(Sampler):
    """Roots only: a client call or a produce without a parent (a heartbeat, a write-behind
    flush, the consumer's poll of many records) is dropped; anything else by trace id ratio."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind in (SpanKind.CLIENT, SpanKind.PRODUCER) or (
            kind is SpanKind.CONSUMER and name.endswith(" receive")
        ):
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"MugposRoot{{{self._ratio.get_description()}}}"


# --- Kafka headers ---------------------------------------------------------------------------


class _HeaderGetter(Getter[Any]):
    """Kafka headers as aiokafka and Faust give them: (name, bytes) pairs or a mapping."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        items = carrier.items() if isinstance(carrier, Mapping) else (carrier or ())
        found = [
            v.decode("latin-1") if isinstance(v, bytes | bytearray) else str(v)
            for k, v in items
            if v is not None and str(k).lower() == key
        ]
        return found or None

    def keys(self, carrier: Any) -> list[str]:
        items = carrier.items() if isinstance(carrier, Mapping) else (carrier or ())
        return [str(k) for k, _ in items]


_GETTER = _HeaderGetter()


def extract(headers: Any) -> Context:
    """The trace context a message's headers carry (an empty context when none, or malformed)."""
    return propagate.extract(headers, getter=_GETTER)


def inject(headers: list[tuple[str, bytes]], ctx: Context | None = None) -> list[tuple[str, bytes]]:
    """Append `traceparent` (and `tracestate`) of `ctx` (default: the current one) to Kafka
    headers, replacing any already there: for a publisher that is not instrumented."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    if carrier:
        headers[:] = [(k, v) for k, v in headers if k.lower() not in TRACE_HEADERS]
        headers.extend((k, v.encode()) for k, v in carrier.items() if k in TRACE_HEADERS)
    return headers


def annotate(**attributes: Any) -> None:
    """Set `mugpos.*` attributes on the current span, when it is recorded."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_attrs(attributes))


def trace_id_hex(span: Span | None = None) -> str | None:
    """The 32-hex trace id of `span` (default: the current span); None without a valid one."""
    context = (span or trace.get_current_span()).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


# --- The pipeline's spans --------------------------------------------------------------------


def tracer() -> trace.Tracer:
    return trace.get_tracer("mugpos", tracer_provider=_provider)


@dataclass(slots=True, eq=False)
class ImageTrace:
    """One image's span in a worker stage: recording when sampled; ends with its outcome."""

    span: Span
    context: Context
    recording: bool
    ended: bool = False

    @property
    def trace_id(self) -> str | None:
        return trace_id_hex(self.span)

    def set(self, **attributes: Any) -> None:
        if self.recording:
            self.span.set_attributes(
                {f"mugpos.{k}": v for k, v in attributes.items() if v is not None}
            )

    def end(self) -> None:
        """End the span (once: later calls do nothing)."""
        if self.recording and not self.ended:
            self.ended = True
            self.span.end()


OFF = ImageTrace(trace.INVALID_SPAN, Context(), False)


def image_trace(message: Any, stage: str) -> ImageTrace:
    """The span of one consumed message in `stage` (`process {stage}`), a child of the context
    its headers carry. Tracing off: a shared do-nothing trace."""
    if _provider is None:
        return OFF
    parent = extract(getattr(message, "headers", None))
    span = tracer().start_span(f"process {stage}", context=parent, kind=SpanKind.CONSUMER)
    recording = span.is_recording()
    if recording:
        span.set_attributes(
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": str(getattr(message, "topic", "")),
                "messaging.destination.partition.id": str(getattr(message, "partition", "")),
                "messaging.kafka.offset": int(getattr(message, "offset", -1) or -1),
                "mugpos.stage": stage,
            }
        )
    return ImageTrace(span, trace.set_span_in_context(span, parent), recording)


@contextmanager
def use(image: ImageTrace) -> Iterator[None]:
    """Make the image's span current (driver spans and produced messages then belong to it)."""
    if _provider is None:
        yield
        return
    token = otel_context.attach(image.context)
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def child(image: ImageTrace, name: str, **attributes: Any) -> Iterator[Span | None]:
    """A span under one image, current while it runs; nothing when the image is not recorded."""
    if not image.recording:
        yield None
        return
    with tracer().start_as_current_span(
        name, context=image.context, attributes=_attrs(attributes)
    ) as span:
        yield span


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span | None]:
    """A span under the current one, only when that one is recorded."""
    if _provider is None or not trace.get_current_span().is_recording():
        yield None
        return
    with tracer().start_as_current_span(name, attributes=_attrs(attributes)) as made:
        yield made


@contextmanager
def stage(
    name: str, images: Iterable[ImageTrace], *, links: bool = False, **attributes: Any
) -> Iterator[list[Span]]:
    """One batched step (a model run, a sink write) as a span under every recorded image of the
    batch, same start and end; the first is current, so a driver's span nests under it. With
    `links`, each links to every image span of the batch."""
    images = list(images)
    recorded = [i for i in images if i.recording]
    if not recorded:
        yield []
        return
    batch_links = (
        [Link(i.span.get_span_context()) for i in images if i.span.get_span_context().is_valid]
        if links
        else None
    )
    made = [
        tracer().start_span(
            name, context=i.context, attributes=_attrs(attributes), links=batch_links
        )
        for i in recorded
    ]
    token = otel_context.attach(trace.set_span_in_context(made[0]))
    try:
        yield made
    except BaseException as exc:
        for s in made:
            s.record_exception(exc)
            s.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        otel_context.detach(token)
        for s in made:
            s.end()


def interval(image: ImageTrace, name: str, start_ns: int, end_ns: int | None = None) -> None:
    """A span for a wait already over (from `start_ns` to `end_ns`, default now)."""
    if image.recording:
        tracer().start_span(name, context=image.context, start_time=start_ns).end(
            end_time=end_ns or time.time_ns()
        )


def _attrs(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {f"mugpos.{k}": v for k, v in attributes.items() if v is not None}


# --- The local exporter and reading it back --------------------------------------------------


class JsonLinesExporter(SpanExporter):
    """Finished spans appended to a file, one JSON object a line. Several processes may share
    the file: each batch is one append."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        data = b"".join(orjson.dumps(span_record(s), default=str) + b"\n" for s in spans)
        with self._lock:
            if self._fd is None:
                return SpanExportResult.FAILURE
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_record(s: Any) -> dict[str, Any]:
    """What the file exporter writes of a finished SDK span."""
    ctx, parent = s.get_span_context(), s.parent
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "name": s.name,
        "kind": s.kind.name,
        "service": s.resource.attributes.get("service.name"),
        "start_ns": s.start_time,
        "end_ns": s.end_time,
        "duration_ms": round((s.end_time - s.start_time) / 1e6, 3),
        "status": s.status.status_code.name,
        "attributes": dict(s.attributes or {}),
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in s.links
        ],
    }


def read_spans(path: Path) -> list[dict[str, Any]]:
    """Every span a JSON lines file holds (a line cut short by a writer still busy is skipped)."""
    if not path.exists():
        return []
    spans = []
    for line in path.read_bytes().splitlines():
        try:
            spans.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return spans


def trace_tree(spans: Iterable[Mapping[str, Any]], trace_id: str) -> list[tuple[int, dict]]:
    """One trace's spans in tree order as (depth, span), children by start time; a span whose
    parent was not recorded here (a client's own span) is a root."""
    mine = {s["span_id"]: dict(s) for s in spans if s["trace_id"] == trace_id}
    children: dict[str | None, list[dict]] = {}
    for s in mine.values():
        parent = s["parent_id"] if s["parent_id"] in mine else None
        children.setdefault(parent, []).append(s)
    ordered: list[tuple[int, dict]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s["start_ns"]):
            ordered.append((depth, s))
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return ordered
