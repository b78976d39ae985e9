"""No credential survives into a log line: query parameters, JWTs, API keys, bearer values."""

from __future__ import annotations

import logging
import sys

import pytest

from infra.logging_setup import (
    ACCESS_LOGGER,
    DRIVER_LOGGERS,
    RedactCredentials,
    RedactingFormatter,
    configure_logging,
    redact,
)

pytestmark = pytest.mark.unit

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '127.0.0.1:5 - "WebSocket /ws/control-plane?token=abc.def&source_id=desk-1" [accepted]',
            '127.0.0.1:5 - "WebSocket /ws/control-plane?token=***&source_id=desk-1" [accepted]',
        ),
        ("/ws/x?source_id=d&ticket=T0k3n-_x", "/ws/x?source_id=d&ticket=***"),
        ("GET /a?access_token=s3cr3t HTTP/1.1", "GET /a?access_token=*** HTTP/1.1"),
        ("/a?API_KEY=k1&X-Api-Key=k2;password=p", "/a?API_KEY=***&X-Api-Key=***;password=***"),
        ("/a?client_secret=x&sig=y&session_id=z", "/a?client_secret=***&sig=***&session_id=***"),
        ("/a?Token=x#frag", "/a?Token=***#frag"),
        ("/a?token=&source_id=d", "/a?token=&source_id=d"),  # nothing to hide
        # Not credentials: left as they are, and `key` in free text is no query parameter.
        ("/api/v1/analyze?source_id=desk-1&status=ok&limit=20", None),
        ("stored key=abc for r-1", None),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer ***"),
        (f"decoding {JWT} failed", "decoding *** failed"),
        ("unknown key mpk_3fa2b1c0d9e8_Zm9v-YmFy.", "unknown key ***."),
        ("Bearer opaque-value, next", "Bearer ***, next"),
    ],
)
def test_redact(line: str, expected: str | None) -> None:
    assert redact(line) == (line if expected is None else expected)


def test_the_filter_rewrites_a_records_message_and_drops_its_args() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" %s',
        ("127.0.0.1:5", "/ws/control-plane?ticket=abc", "[accepted]"),
        None,
    )
    assert RedactCredentials().filter(record)
    assert (
        record.getMessage() == '127.0.0.1:5 - "WebSocket /ws/control-plane?ticket=***" [accepted]'
    )


def test_the_formatter_masks_tracebacks_too() -> None:
    try:
        raise ValueError(f"bad url http://h/x?token={JWT}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = RedactingFormatter("%(message)s").format(record)
    assert "ValueError: bad url http://h/x?token=***" in line
    assert JWT not in line


def test_verbose_leaves_the_drivers_at_their_own_level() -> None:
    """`-v` (DEBUG) must not turn on pymongo's document dumps: drivers keep the driver level."""
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    saved_handlers, saved_level = root.handlers[:], root.level
    saved = {name: logging.getLogger(name).level for name in (*DRIVER_LOGGERS, "uvicorn")}
    root.handlers = []  # a process nobody configured yet, as `mugpos` starts
    try:
        configure_logging("DEBUG", "WARNING")
        assert root.level == logging.DEBUG
        assert not logging.getLogger("pymongo.command").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("botocore.endpoint").isEnabledFor(logging.INFO)
        assert logging.getLogger("api.routes").isEnabledFor(logging.DEBUG)
        server = logging.getLogger("uvicorn.error")  # its DEBUG: every header of every handshake
        assert server.isEnabledFor(logging.INFO)
        assert not server.isEnabledFor(logging.DEBUG)
        configure_logging("INFO", "DEBUG")  # a second call adjusts, adds no handler
        assert len(root.handlers) == len(access.handlers) == 1
        assert logging.getLogger("pymongo.command").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers, access.handlers, access.propagate = saved_handlers, [], True
        root.setLevel(saved_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
