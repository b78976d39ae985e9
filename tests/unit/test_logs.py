"""Structured logs (infra.logging_setup): JSON lines with context, console lines for a terminal,
credentials masked in either, a trace id when a span is current."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from infra.logging_setup import (
    bind_context,
    bind_process,
    line_formatter,
    unbind_context,
    wants_console,
)

pytestmark = pytest.mark.unit
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLWJ5dGVz"


def _logged(log_format: str, emit) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(line_formatter(log_format, stream))
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_json_line_carries_the_context_and_masks_credentials() -> None:
    bind_process(worker_id="host-1-ab")
    bind_context(stage="pipeline", request_id="r-42")
    try:
        out = _logged(
            "json",
            lambda log: log.warning('refused "%s" at ?token=%s', "WebSocket /ws", JWT),
        )
    finally:
        unbind_context("stage", "request_id")
    line = json.loads(out)  # masking happens before rendering: still valid JSON
    assert line["event"] == 'refused "WebSocket /ws" at ?token=***'
    assert (line["level"], line["logger"]) == ("warning", "tests.logs")
    assert (line["worker_id"], line["stage"], line["request_id"]) == (
        "host-1-ab",
        "pipeline",
        "r-42",
    )
    assert line["ts"].endswith("Z")
    assert JWT not in out


def test_extra_fields_and_tracebacks_are_fields_of_the_line() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise ValueError(f"bad url http://h/x?ticket=abc {JWT}")
        except ValueError:
            log.exception("failed", extra={"status": 500, "path": "/a"})

    line = json.loads(_logged("json", emit))
    assert (line["status"], line["path"]) == (500, "/a")
    assert "ValueError: bad url http://h/x?ticket=*** ***" in line["exception"]


def test_console_lines_are_for_people() -> None:
    out = _logged("console", lambda log: log.info("hello ?api_key=k1"))
    assert not out.startswith("{")
    assert "hello ?api_key=***" in out
    assert "info" in out


def test_auto_is_console_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_console("auto", Tty())
    assert not wants_console("auto", io.StringIO())
    assert not wants_console("json", Tty())
    assert wants_console("console", io.StringIO())


def test_the_current_span_gives_the_trace_id() -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = sdk.TracerProvider().get_tracer("tests")
    with tracer.start_as_current_span("stage") as span:
        line = json.loads(_logged("json", lambda log: log.info("inside")))
    context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    outside = json.loads(_logged("json", lambda log: log.info("outside")))
    assert "trace_id" not in outside


def test_structlog_loggers_share_the_handlers() -> None:
    """stamina logs its retries through structlog: they must land in the same JSON lines."""
    from infra.logging_setup import _configure_structlog

    _configure_structlog()
    out = _logged(
        "json", lambda _: structlog.get_logger("tests.logs").warning("retry_scheduled", wait=1.5)
    )
    line = json.loads(out)
    assert (line["event"], line["wait"], line["logger"]) == ("retry_scheduled", 1.5, "tests.logs")
