"""Dead-letter redrive, the pure part: --since values, the letter filter, replay headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.pipeline.intake import parse_headers
from core.pipeline.redrive import LetterFilter, parse_since, replay_headers
from schemas.messages import IMAGE_REF_CONTENT_TYPE, DeadLetter

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "stage": "preprocess",
        "reason": "bad_image_ref",
        "message": "no object under key 'a/b.jpg'",
        "original_topic": "t.images.v1",
        "original_partition": 2,
        "original_offset": 7,
        "original_headers": {
            "request-id": "req-1",
            "Source-Id": "cam-7",
            "Content-Type": "image/jpeg",
            "content-length": "1234",
            "options": '{"confidence": 0.4}',
        },
        "object_key": "a/b.jpg",
        "failed_at": NOW,
    }
    return DeadLetter(**(fields | changes))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("1D", NOW - timedelta(days=1)),
        ("45s", NOW - timedelta(seconds=45)),
        ("2026-11-25T08:00:00Z", datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ("2026-11-25T08:00:00+02:00", datetime(2026, 11, 25, 6, tzinfo=UTC)),
        ("2026-11-25", datetime(2026, 11, 25, tzinfo=UTC)),  # naive: UTC
    ],
)
def test_since_takes_times_and_durations(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-1h", "", "1y", "2026-13-01"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_since(text, NOW)


def test_filter_selects_by_reason_stage_and_time() -> None:
    letter = _letter()
    assert LetterFilter().matches(letter)
    assert LetterFilter(reason="bad_image_ref", stage="preprocess", since=NOW).matches(letter)
    assert not LetterFilter(reason="empty_input").matches(letter)
    assert not LetterFilter(stage="inference").matches(letter)
    assert not LetterFilter(since=NOW + timedelta(seconds=1)).matches(letter)


def test_replay_headers_keep_the_request_and_describe_the_claim_check() -> None:
    headers = replay_headers(_letter(), 1, 42)
    parsed = parse_headers(headers)  # what the worker's intake will read
    assert (parsed.request_id, parsed.source_id) == ("req-1", "cam-7")
    assert parsed.content_type == IMAGE_REF_CONTENT_TYPE
    assert parsed.options == {"confidence": 0.4}
    names = [name.lower() for name, _ in headers]
    assert "content-length" not in names
    assert names.count("content-type") == names.count("request-id") == 1
    assert dict(headers)["replay-of"] == b"dlq:1:42"


def test_replay_headers_carry_a_derived_request_id_and_replace_an_old_replay_mark() -> None:
    letter = _letter(
        request_id="k-0123456789abcdef01234567",
        original_headers={"replay-of": "dlq:0:3", "source-id": "cam-1"},
    )
    headers = dict(replay_headers(letter, 0, 9))
    assert headers["request-id"] == b"k-0123456789abcdef01234567"
    assert headers["replay-of"] == b"dlq:0:9"
    assert headers["source-id"] == b"cam-1"
