"""Trace context in Kafka headers, the sampling policy, the pipeline's span helpers and the
span file (infra.tracing). No global tracer provider is installed: each test uses its own."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from infra import tracing

pytestmark = pytest.mark.unit

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _context(sampled: bool = True):
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=flags))
    return trace.set_span_in_context(span)


def test_inject_writes_traceparent_as_bytes_beside_other_headers() -> None:
    headers = [("request-id", b"r1"), ("TraceParent", b"00-stale")]
    tracing.inject(headers, _context())
    assert ("request-id", b"r1") in headers
    assert [v for k, v in headers if k.lower() == "traceparent"] == [TRACEPARENT.encode()]


@pytest.mark.parametrize(
    "headers",
    [
        [("request-id", b"r1"), ("traceparent", TRACEPARENT.encode())],
        (("traceparent", TRACEPARENT.encode()),),  # aiokafka's tuple of pairs
        {"traceparent": TRACEPARENT.encode()},  # Faust may hand a mapping
        [("Traceparent", TRACEPARENT)],  # names are case-insensitive, values may be str
    ],
)
def test_extract_reads_the_context_a_message_carries(headers) -> None:
    context = trace.get_current_span(tracing.extract(headers)).get_span_context()
    assert context.is_valid
    assert context.is_remote
    assert (context.trace_id, context.span_id) == (TRACE_ID, SPAN_ID)
    assert context.trace_flags.sampled


@pytest.mark.parametrize(
    "headers", [None, [], [("traceparent", b"garbage")], [("traceparent", b"\xff\xfe")]]
)
def test_no_or_bad_traceparent_extracts_nothing(headers) -> None:
    assert not trace.get_current_span(tracing.extract(headers)).get_span_context().is_valid


def test_inject_then_extract_round_trips_sampled_and_unsampled() -> None:
    for sampled in (True, False):
        headers: list[tuple[str, bytes]] = []
        tracing.inject(headers, _context(sampled))
        context = trace.get_current_span(tracing.extract(headers)).get_span_context()
        assert context.trace_id == TRACE_ID
        assert context.trace_flags.sampled is sampled


def _decide(sampler, kind: SpanKind, name: str = "process pipeline", parent=None) -> Decision:
    return sampler.should_sample(parent, TRACE_ID, name, kind).decision


def test_sampling_is_parent_based_and_only_requests_and_images_start_traces() -> None:
    always, never = tracing.sampler(1.0), tracing.sampler(0.0)
    assert _decide(always, SpanKind.SERVER, "POST /api/v1/analyze") is Decision.RECORD_AND_SAMPLE
    assert _decide(always, SpanKind.CONSUMER) is Decision.RECORD_AND_SAMPLE
    assert _decide(never, SpanKind.CONSUMER) is Decision.DROP
    # A driver call, a produce or a poll outside any request or image is no trace of its own.
    assert _decide(always, SpanKind.CLIENT, "mugpos.insert") is Decision.DROP
    assert _decide(always, SpanKind.PRODUCER, "mugpos.control.v1 send") is Decision.DROP
    assert _decide(always, SpanKind.CONSUMER, "mugpos.images.v1 receive") is Decision.DROP
    # The caller's decision wins, whatever the ratio.
    assert _decide(never, SpanKind.CONSUMER, parent=_context(True)) is Decision.RECORD_AND_SAMPLE
    assert _decide(always, SpanKind.CONSUMER, parent=_context(False)) is Decision.DROP
    assert _decide(never, SpanKind.CLIENT, parent=_context(True)) is Decision.RECORD_AND_SAMPLE


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """A provider of the test's own in place of setup()'s (nothing installed globally)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.sampler(1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_provider", provider)
    return exporter


def _message(headers, offset: int = 7) -> SimpleNamespace:
    return SimpleNamespace(headers=headers, topic="mugpos.images.v1", partition=1, offset=offset)


def test_tracing_off_makes_no_spans_and_no_trace_ids() -> None:
    assert not tracing.enabled()
    image = tracing.image_trace(_message([("traceparent", TRACEPARENT.encode())]), "pipeline")
    assert image is tracing.OFF
    assert image.trace_id is None
    with tracing.use(image), tracing.child(image, "intake") as made, tracing.span("decode") as s:
        assert made is None
        assert s is None


def test_an_image_span_continues_the_message_trace(spans: InMemorySpanExporter) -> None:
    image = tracing.image_trace(_message([("traceparent", TRACEPARENT.encode())]), "pipeline")
    assert image.recording
    assert image.trace_id == f"{TRACE_ID:032x}"
    with tracing.use(image), tracing.child(image, "intake"), tracing.span("decode"):
        pass
    image.end()
    image.end()  # once only
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert set(by_name) == {"process pipeline", "intake", "decode"}
    assert by_name["process pipeline"].parent.span_id == SPAN_ID
    assert by_name["intake"].parent.span_id == by_name["process pipeline"].context.span_id
    assert by_name["decode"].parent.span_id == by_name["intake"].context.span_id
    assert by_name["process pipeline"].attributes["messaging.kafka.offset"] == 7


def test_an_unsampled_image_gets_a_trace_id_but_no_span_work(
    spans: InMemorySpanExporter,
) -> None:
    image = tracing.image_trace(
        _message([("traceparent", TRACEPARENT[:-2].encode() + b"00")]), "pipeline"
    )
    assert not image.recording
    assert image.trace_id == f"{TRACE_ID:032x}"  # still propagated to the result
    with tracing.stage("inference", [image], links=True) as made:
        assert made == []
    with tracing.child(image, "rules") as span:
        assert span is None
    image.end()
    assert spans.get_finished_spans() == ()


def test_a_batch_step_is_a_span_in_every_recorded_image_linked_to_all(
    spans: InMemorySpanExporter,
) -> None:
    images = [tracing.image_trace(_message(None, offset=i), "pipeline") for i in range(3)]
    with tracing.stage("inference", images, links=True, batch_size=3, device="cpu"):
        # The first image's span is current: a driver's span nests under it.
        assert (
            trace.get_current_span().get_span_context().trace_id
            == images[0].span.get_span_context().trace_id
        )
    for image in images:
        image.end()
    inference = [s for s in spans.get_finished_spans() if s.name == "inference"]
    assert len(inference) == 3
    assert {s.context.trace_id for s in inference} == {
        i.span.get_span_context().trace_id for i in images
    }
    for s in inference:
        assert s.attributes["mugpos.batch_size"] == 3
        assert {link.context.span_id for link in s.links} == {
            i.span.get_span_context().span_id for i in images
        }


def test_a_failed_batch_step_marks_every_span(spans: InMemorySpanExporter) -> None:
    images = [tracing.image_trace(_message(None, offset=i), "pipeline") for i in range(2)]
    with pytest.raises(RuntimeError), tracing.stage("sink mongodb", images):
        raise RuntimeError("down")
    failed = [s for s in spans.get_finished_spans() if s.name == "sink mongodb"]
    assert [s.status.status_code.name for s in failed] == ["ERROR", "ERROR"]


def test_the_span_file_reads_back_as_a_tree(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    image = tracing.image_trace(_message([("traceparent", TRACEPARENT.encode())]), "pipeline")
    with tracing.child(image, "intake"), tracing.span("decode"):
        pass
    with tracing.child(image, "inference"):
        pass
    image.end()
    path = tmp_path / "spans" / "file.jsonl"
    for _ in range(2):  # two processes appending to one file
        exporter = tracing.JsonLinesExporter(path)
        exporter.export(spans.get_finished_spans())
        exporter.shutdown()
    with path.open("ab") as out:
        out.write(b'{"cut short')  # a writer still busy
    read = tracing.read_spans(path)
    assert len(read) == 8
    tree = tracing.trace_tree(read[:4], f"{TRACE_ID:032x}")
    assert [(depth, s["name"]) for depth, s in tree] == [
        (0, "process pipeline"),
        (1, "intake"),
        (2, "decode"),
        (1, "inference"),
    ]
    root = tree[0][1]
    assert root["parent_id"] == f"{SPAN_ID:016x}"  # the client's span, not recorded here
    assert root["duration_ms"] >= 0
