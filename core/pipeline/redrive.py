"""Dead-letter redrive, the pure part: which letters an operator selected, and the headers a
replayed input carries. The Kafka, MongoDB and object-store side is `infra.dead_letters`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.messages import IMAGE_REF_CONTENT_TYPE, DeadLetter

REPLAY_HEADER = "replay-of"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Set by the replay itself; any original copy (a letter that was already a replay) is replaced.
# The original's trace context is left behind too: a replay is a trace of its own.
_REPLACED = {"request-id", "content-type", REPLAY_HEADER, "traceparent", "tracestate"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (naive means UTC) or a duration back from now (`30m`, `2h`, `1d`).

    Raises ValueError with a message fit for the operator."""
    match = _DURATION.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2).lower()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO-8601 time (2026-05-01T12:00:00Z) "
            "nor a duration (30s, 30m, 2h, 1d, 1w)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """What `mugpos dlq list|replay` selects; an unset field selects everything."""

    reason: str | None = None
    stage: str | None = None
    since: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.reason is None or letter.reason == self.reason)
            and (self.stage is None or letter.stage == self.stage)
            and (self.since is None or letter.failed_at >= self.since)
        )


def position_label(partition: int, offset: int) -> str:
    """How a dead letter is named in headers, audit entries and output: `dlq:<partition>:<offset>`."""
    return f"dlq:{partition}:{offset}"


def replay_headers(letter: DeadLetter, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The original headers, minus those describing the old body (`content-*`: the replay's body
    is a claim check), plus the letter's request id (also when the original had none and the id
    was derived from its position, so the result lands under the id already reported) and the
    dead letter it replays. Names are compared case-insensitively, as intake reads them."""
    kept = [
        (name, value.encode())
        for name, value in letter.original_headers.items()
        if not name.lower().startswith("content-") and name.lower() not in _REPLACED
    ]
    return [
        ("request-id", letter.request_id.encode()),
        *kept,
        ("content-type", IMAGE_REF_CONTENT_TYPE.encode()),
        (REPLAY_HEADER, position_label(partition, offset).encode()),
    ]
