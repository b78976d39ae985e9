"""How every `mugpos` process logs: one place sets levels, handlers, format and the credential
filter.

* Every line is one JSON object (`MUGPOS_LOG_FORMAT=json`, what `auto` picks when the stream is
  not a terminal) or a human-readable line (`console`, `auto` on a terminal), rendered by
  `structlog` over the standard library's logging: records of our code, of libraries and of
  structlog loggers (stamina's retries) all pass the same processors. Each carries `ts`, `level`,
  `logger`, `event` (the message), and, where known, `worker_id`, `stage`, `request_id` (bound as
  context variables: `bind_context`, `bind_process`) and `trace_id`/`span_id` of the current
  OpenTelemetry span.
* `MUGPOS_LOG_LEVEL` is the level of our code (and of Faust and uvicorn); `-v` is DEBUG.
* Drivers (MongoDB, Kafka, Redis, S3, HTTP clients, uvicorn's WebSocket trace) log at
  `MUGPOS_DRIVER_LOG_LEVEL` whatever the level of the rest: pymongo's DEBUG output carries whole
  documents (argon2 `password_hash`, `email_encrypted`), botocore's signed requests, uvicorn's
  every handshake header: `-v` alone must never turn it on.
* The API's access log (`mugpos.access`, INFO) is one line per request on stdout, its fields
  (method, path, status, ms, …) at the top level of the JSON object.
* Whatever a line says, a credential in it is masked: query parameters named like one
  (`?token=`, `ticket=`, `api_key=`, `password=` …), JWTs, API keys and bearer values. uvicorn
  writes the full request target of every WebSocket handshake at INFO (`"WebSocket
  /ws/control-plane?token=eyJ…" [accepted]`); `RedactCredentials` on its loggers rewrites those
  lines wherever the app is served.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from infra.log_throttle import throttle_handlers

try:  # tracing is optional here: a trace id is logged when a span is current
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - opentelemetry-api is installed with the project
    _otel_trace = None  # type: ignore[assignment]

ACCESS_LOGGER = "mugpos.access"
#: Loggers of the libraries we talk to services through; their level is the driver level.
DRIVER_LOGGERS = (
    "pymongo",
    "motor",
    "aiokafka",
    "kafka",
    "faust.transport",
    "redis",
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "httpx",
    "httpcore",
    "websockets",
    "python_multipart",
    "multipart",
    "PIL",
)
#: The servers' loggers, which write request targets (query strings included).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
MASK = "***"

# A query parameter whose name says it holds a credential, e.g. `token`, `access_token`, `ticket`,
# `api_key`, `X-Api-Key`, `password`, `client_secret`, `sig`, `session_id`.
_CREDENTIAL_PARAM = re.compile(
    r"(?P<name>(?<=[?&;])[\w.\-\[\]%]*?"
    r"(?:token|ticket|key|passw|pwd|secret|signature|credential|auth|session|jwt|sig\b)"
    r"[\w.\-\[\]%]*)=(?P<value>[^&;\s\"'#]*)",
    re.IGNORECASE,
)
_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_API_KEY = re.compile(r"\bmpk_[\w-]+")  # infra.users_store.KEY_PREFIX
_BEARER = re.compile(r"(?<=\bBearer )[^\s\"',;]+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every credential it carries replaced by `***`; the rest unchanged."""
    text = _CREDENTIAL_PARAM.sub(lambda m: f"{m['name']}={MASK}" if m["value"] else m[0], text)
    text = _JWT.sub(MASK, text)
    text = _API_KEY.sub(MASK, text)
    return _BEARER.sub(MASK, text)


class RedactCredentials(logging.Filter):
    """On a logger: rewrites its records' messages so no handler sees a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: the handler reports it as it would
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class RedactingFormatter(logging.Formatter):
    """The whole formatted line masked, tracebacks included (an exception may quote a URL)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


EventDict = MutableMapping[str, Any]
#: Fields every line of this process carries (`bind_process`), e.g. a worker's `worker_id`.
_PROCESS_FIELDS: dict[str, Any] = {}


def bind_process(**fields: Any) -> None:
    """Fields for every line this process logs from now on, whichever task or thread logs."""
    _PROCESS_FIELDS.update(fields)


def bind_context(**fields: Any) -> None:
    """Fields for the lines of the current task (and tasks it starts), e.g. `stage`,
    `request_id`: structlog's context variables."""
    structlog.contextvars.bind_contextvars(**fields)


def unbind_context(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)


def _add_process_fields(_: Any, __: str, event: EventDict) -> EventDict:
    for name, value in _PROCESS_FIELDS.items():
        event.setdefault(name, value)
    return event


def _add_trace(_: Any, __: str, event: EventDict) -> EventDict:
    """`trace_id` and `span_id` of the current OpenTelemetry span, when one is recording."""
    if _otel_trace is not None and "trace_id" not in event:
        context = _otel_trace.get_current_span().get_span_context()
        if context.is_valid:
            event["trace_id"] = format(context.trace_id, "032x")
            event["span_id"] = format(context.span_id, "016x")
    return event


def _redact_values(_: Any, __: str, event: EventDict) -> EventDict:
    """Every string field masked (before rendering: JSON escaping must not be cut in two)."""
    for name, value in event.items():
        if isinstance(value, str):
            event[name] = redact(value)
    return event


#: What every record goes through, a stdlib one or a structlog one, before rendering.
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    _add_process_fields,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    _add_trace,
]


def wants_console(log_format: str, stream: TextIO | None) -> bool:
    """`console` for a human at a terminal, `json` otherwise; `auto` decides by the stream."""
    if log_format != "auto":
        return log_format == "console"
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream: a machine reads it
        return False


def line_formatter(log_format: str = "auto", stream: TextIO | None = None) -> logging.Formatter:
    """The formatter of every handler of a `mugpos` process: JSON lines or console lines,
    credentials masked in every field, the traceback included."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if wants_console(log_format, stream)
        else structlog.processors.JSONRenderer(ensure_ascii=False, default=str)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_values,
            renderer,
        ],
    )


def _configure_structlog() -> None:
    """structlog loggers (ours, stamina's) hand their events to the stdlib handlers."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def format_handlers(handlers: list[logging.Handler], log_format: str) -> None:
    """Give handlers someone else made (Faust's) our formatter and credential filter."""
    for handler in handlers:
        handler.setFormatter(line_formatter(log_format, getattr(handler, "stream", None)))
        if not any(isinstance(f, RedactCredentials) for f in handler.filters):
            handler.addFilter(RedactCredentials())


class _OwnHandler(logging.StreamHandler):
    """A handler this module made: tells a second `configure_logging` the process is ours."""


def redact_server_logs() -> None:
    """Mask credentials in the lines the ASGI server writes, however it was started (`mugpos
    api`, or `uvicorn api.main:app` with uvicorn's own logging)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())


def configure_logging(level: str, driver_level: str = "WARNING", log_format: str = "auto") -> None:
    """Log at `level` to stderr, drivers at `driver_level`, access lines to stdout, each as JSON
    or console lines (`log_format`).

    Idempotent. A process whose logging a host already set up (a test runner, a program embedding
    ours) is left as it is, like `logging.basicConfig` would.
    """
    _configure_structlog()
    root = logging.getLogger()
    if any(not isinstance(handler, _OwnHandler) for handler in root.handlers):
        return
    root.setLevel(level)
    for name in DRIVER_LOGGERS:
        logging.getLogger(name).setLevel(driver_level)
    # uvicorn lends its logger to the websockets library, whose DEBUG output is every handshake
    # header (cookies included) and frame: a driver's. Its INFO and up are the server's own.
    server_level = max(_number(level), min(_number(driver_level), logging.INFO))
    logging.getLogger("uvicorn").setLevel(server_level)
    if not root.handlers:
        handler = _OwnHandler(sys.stderr)
        root.addHandler(handler)
        # A broker outage must not flood the log: its repeats are summarised (infra.log_throttle).
        throttle_handlers([handler])
    access = logging.getLogger(ACCESS_LOGGER)  # INFO: on by default, off at WARNING
    access.propagate = False
    if not access.handlers:
        access.addHandler(_OwnHandler(sys.stdout))
    for own in (*root.handlers, *access.handlers):  # a second call may change the format
        own.setFormatter(line_formatter(log_format, own.stream))
    redact_server_logs()


def _number(level: str) -> int:
    return logging.getLevelNamesMapping()[level]
