"""Reading an input message: headers any Kafka client can set, and a request id that survives
redelivery."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

BAD_HEADERS = "bad_headers"
_MAX_ID = 128


class IntakeError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class InputHeaders:
    request_id: str | None = None
    source_id: str = "unknown"
    content_type: str | None = None
    submitted_at: datetime | None = None
    captured_at: datetime | None = None  # when a camera took the picture: its frame time
    options: dict[str, object] = field(default_factory=dict)


def derived_request_id(topic: str, partition: int, offset: int) -> str:
    """Stable for one message: a redelivered message keeps its id, so the sink stays idempotent."""
    digest = hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()[:24]
    return f"k-{digest}"


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise IntakeError(BAD_HEADERS, f"header {name!r} is not UTF-8 text") from None


def request_id_hint(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The request-id header alone, when usable: lets a message whose *other* headers are bad
    still be answered under the id its sender waits for."""
    for name, raw in headers or []:
        if name.lower() == "request-id" and raw:
            try:
                value = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                return None
            return value if value.isprintable() and 0 < len(value) <= _MAX_ID else None
    return None


def _time(values: dict[str, str], name: str) -> datetime | None:
    """An ISO 8601 header; one without a zone is UTC (a camera's clock rarely says)."""
    if not values.get(name):
        return None
    try:
        moment = datetime.fromisoformat(values[name].replace("Z", "+00:00"))
    except ValueError:
        raise IntakeError(BAD_HEADERS, f"{name} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_headers(headers: Iterable[tuple[str, bytes]] | None) -> InputHeaders:
    """Optional headers: request-id, source-id, content-type, submitted-at and captured-at
    (ISO 8601), options (JSON)."""
    values = {name.lower(): _text(name, raw) for name, raw in (headers or []) if raw is not None}
    request_id = values.get("request-id") or None
    if request_id is not None and (len(request_id) > _MAX_ID or not request_id.isprintable()):
        raise IntakeError(BAD_HEADERS, f"request-id must be printable and at most {_MAX_ID} chars")
    submitted = _time(values, "submitted-at")
    captured = _time(values, "captured-at")
    options: dict[str, object] = {}
    if values.get("options"):
        try:
            options = json.loads(values["options"])
        except json.JSONDecodeError as exc:
            raise IntakeError(BAD_HEADERS, f"options is not JSON: {exc.msg}") from None
        if not isinstance(options, dict):
            raise IntakeError(BAD_HEADERS, "options must be a JSON object")
        confidence = options.get("confidence")
        if confidence is None:  # null is the default, as when absent: the worker reads a number
            options.pop("confidence", None)
        elif not (
            isinstance(confidence, int | float)
            and not isinstance(confidence, bool)  # `true` is no number (Python: bool is an int)
            and 0 <= confidence <= 1
        ):
            raise IntakeError(BAD_HEADERS, "options.confidence must be a number from 0 to 1")
    return InputHeaders(
        request_id=request_id,
        source_id=(values.get("source-id") or "unknown")[:_MAX_ID],
        content_type=values.get("content-type") or None,
        submitted_at=submitted,
        captured_at=captured,
        options=options,
    )
