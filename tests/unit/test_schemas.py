"""Message contracts: the published JSON Schemas match the models, and examples validate."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from core.alerts import Frame, alert_events
from core.positioning import analyze
from core.positioning.serialize import facts_to_dict
from core.rules import compile_rule, parse_rule
from schemas.export import DEFAULT_DIR, render
from schemas.messages import Alert, AnalysisResult, DeadLetter, ImageRef
from schemas.stages import PreparedImage, pack_prepared, unpack_prepared
from tests.unit.test_positioning import CALIBRATED, IMAGE, TABLE, mug


def test_published_schemas_are_current() -> None:
    for filename, text in render().items():
        assert (DEFAULT_DIR / filename).read_text() == text, (
            f"docs/schemas/{filename} is stale: run `python -m schemas.export`"
        )


def test_a_full_result_validates_and_round_trips() -> None:
    facts = analyze([TABLE, mug(22, 75)], IMAGE, CALIBRATED)
    verdict = compile_rule(parse_rule("Every mug must be on a coaster."), "r1").evaluate(facts)
    result = AnalysisResult(
        request_id="req-1",
        source_id="cam-1",
        status="ok",
        completed_at=datetime.now(UTC),
        image={
            "width": 800,
            "height": 600,
            "format": "jpeg",
            "sha256": "0" * 64,
            "size_bytes": 1234,
            "object_key": "user-uploads/cam-1/2026-01-01/req-1.jpg",
        },
        detections=[{"class_name": "mug", "role": "mug", "confidence": 0.9, "box": [1, 2, 3, 4]}],
        positioning=facts_to_dict(facts),
        verdicts=[asdict(verdict)],
        model={"name": "mugdet-synth", "version": "1.0.0"},
        rule_set_version="rs-abc",
        timings_ms={"inference": 12.5},
        latency_ms=40.0,
    )
    again = AnalysisResult.model_validate_json(result.model_dump_json())
    assert again.model_dump(mode="json") == result.model_dump(mode="json")
    assert again.verdicts[0].passed is False


def test_contracts_refuse_what_they_do_not_know() -> None:
    with pytest.raises(ValidationError):
        AnalysisResult(
            request_id="r", source_id="s", status="maybe", completed_at=datetime.now(UTC)
        )
    with pytest.raises(ValidationError):
        ImageRef(image_ref="k", surprise=1)
    with pytest.raises(ValidationError):
        AnalysisResult(
            request_id="r",
            source_id="s",
            status="ok",
            completed_at=datetime.now(UTC),
            schema_version=2,
        )


def test_dead_letter_and_alert_examples() -> None:
    letter = DeadLetter(
        request_id="r",
        stage="preprocess",
        reason="truncated_image",
        message="cannot decode",
        original_topic="p.images.v1",
        original_partition=2,
        original_offset=41,
        failed_at=datetime.now(UTC),
        original_headers={"source-id": "cam"},
        object_key="user-uploads/x",
    )
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter
    facts = analyze([TABLE, mug(22, 75)], IMAGE, CALIBRATED)
    verdict = compile_rule(
        parse_rule("If a mug is off its coaster and within 3 cm of the edge, alert (critical)."),
        "r2",
    ).evaluate(facts)
    (alert,) = alert_events(
        Frame("api", "req-1", 0), [verdict], {}, None, None, fresh=True, cooldown_s=0
    )
    assert Alert.model_validate_json(alert.model_dump_json()) == alert
    assert (alert.severity, alert.event, alert.schema_version) == ("critical", "raised", 2)


def _prepared_record() -> PreparedImage:
    return PreparedImage(
        request_id="r-1",
        source_id="cam",
        received_at=datetime(2026, 11, 26, tzinfo=UTC),
        image={
            "width": 640,
            "height": 480,
            "format": "jpeg",
            "sha256": "0" * 64,
            "size_bytes": 1,
            "object_key": "user-uploads/cam/2026-11-26/r-1.jpeg",
        },
        letterbox={"scale": 0.5, "pad_x": 0, "pad_y": 40, "width": 640, "height": 480},
        origin={"topic": "t", "partition": 0, "offset": 7},
    )


def test_a_prepared_image_travels_as_a_binary_frame_not_base64() -> None:
    png = bytes(range(256)) * 40  # any bytes: the frame never looks inside
    value = pack_prepared(_prepared_record(), png)
    record, carried = unpack_prepared(value)
    assert record == _prepared_record()
    assert carried == png
    assert len(value) < len(png) + 1_000  # no base64: a third larger


@pytest.mark.parametrize(
    "value",
    [b"", b"MPF1", b'{"request_id": "r-1"}', b"MPF1\x00\x00\xff\xff{}", b"MPF1\x00\x00\x00\x02{}"],
    ids=["empty", "header only", "json", "length past the end", "metadata invalid"],
)
def test_a_broken_prepared_frame_is_a_value_error(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"prepared-image frame|validation error"):
        unpack_prepared(value)
