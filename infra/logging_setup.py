"""How every `mugpos` process logs: one place sets levels, handlers and the credential filter.

* `MUGPOS_LOG_LEVEL` is the level of our code (and of Faust and uvicorn); `-v` is DEBUG.
* Drivers (MongoDB, Kafka, Redis, S3, HTTP clients, uvicorn's WebSocket trace) log at
  `MUGPOS_DRIVER_LOG_LEVEL` whatever the level of the rest: pymongo's DEBUG output carries whole
  documents (argon2 `password_hash`, `email_encrypted`), botocore's signed requests, uvicorn's
  every handshake header: `-v` alone must never turn it on.
* The API's access log (`mugpos.access`, INFO) is one JSON line per request on stdout.
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

from infra.log_throttle import throttle_handlers

ACCESS_LOGGER = "mugpos.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
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


class _OwnHandler(logging.StreamHandler):
    """A handler this module made: tells a second `configure_logging` the process is ours."""


def redact_server_logs() -> None:
    """Mask credentials in the lines the ASGI server writes, however it was started (`mugpos
    api`, or `uvicorn api.main:app` with uvicorn's own logging)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())


def configure_logging(level: str, driver_level: str = "WARNING") -> None:
    """Log at `level` to stderr, drivers at `driver_level`, access lines as JSON to stdout.

    Idempotent. A process whose logging a host already set up (a test runner, a program embedding
    ours) is left as it is, like `logging.basicConfig` would.
    """
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
        handler.setFormatter(RedactingFormatter(TEXT_FORMAT))
        root.addHandler(handler)
        # A broker outage must not flood the log: its repeats are summarised (infra.log_throttle).
        throttle_handlers([handler])
    access = logging.getLogger(ACCESS_LOGGER)  # INFO: on by default, off at WARNING
    access.propagate = False
    if not access.handlers:
        line = _OwnHandler(sys.stdout)
        line.setFormatter(RedactingFormatter("%(message)s"))
        access.addHandler(line)
    redact_server_logs()


def _number(level: str) -> int:
    return logging.getLevelNamesMapping()[level]
