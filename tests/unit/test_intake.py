"""Input headers from any Kafka client, and request ids that survive redelivery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.pipeline.intake import IntakeError, derived_request_id, parse_headers


def test_all_headers_are_optional() -> None:
    parsed = parse_headers(None)
    assert (parsed.request_id, parsed.source_id, parsed.options) == (None, "unknown", {})


def test_headers_are_read() -> None:
    parsed = parse_headers(
        [
            ("request-id", b"req-1"),
            ("Source-Id", b"cam-7"),
            ("content-type", b"image/png"),
            ("submitted-at", b"2026-11-26T08:00:00Z"),
            ("options", b'{"confidence": 0.4}'),
        ]
    )
    assert parsed.request_id == "req-1"
    assert parsed.source_id == "cam-7"
    assert parsed.submitted_at == datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert parsed.options == {"confidence": 0.4}


def test_a_null_confidence_is_the_default() -> None:
    """As when absent: the worker reads `options.get("confidence", default)` as a number."""
    assert parse_headers([("options", b'{"confidence": null, "x": 1}')]).options == {"x": 1}


@pytest.mark.parametrize(
    "headers",
    [
        [("options", b"{not json")],
        [("options", b"[1, 2]")],
        [("options", b'{"confidence": 7}')],
        [("options", b'{"confidence": true}')],
        [("submitted-at", b"yesterday")],
        [("request-id", b"\xff\xfe")],
        [("request-id", b"x" * 500)],
    ],
)
def test_bad_headers_are_refused_with_a_reason(headers) -> None:
    with pytest.raises(IntakeError) as caught:
        parse_headers(headers)
    assert caught.value.reason == "bad_headers"


def test_request_id_survives_other_bad_headers() -> None:
    from core.pipeline.intake import request_id_hint

    assert request_id_hint([("options", b"{bad"), ("request-id", b"r-9")]) == "r-9"
    assert request_id_hint([("request-id", b"\xff")]) is None
    assert request_id_hint(None) is None


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_request_id("t", 1, 5) == derived_request_id("t", 1, 5)
    assert derived_request_id("t", 1, 5) != derived_request_id("t", 1, 6)
    assert derived_request_id("t", 1, 5) != derived_request_id("t", 2, 5)
