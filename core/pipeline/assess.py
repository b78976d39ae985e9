"""Analysis stage: detections -> positioning facts -> rule verdicts, as one pure step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.models.types import Detection
from core.positioning import Calibration, PositioningConfig, SceneFacts, analyze
from core.rules import CompiledRule, Verdict


@dataclass(frozen=True, slots=True)
class Assessment:
    facts: SceneFacts
    verdicts: tuple[Verdict, ...]

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.passed is False)


def assess(
    detections: Sequence[Detection],
    image_size: tuple[int, int],
    rules: Sequence[CompiledRule],
    calibration: Calibration | None = None,
    config: PositioningConfig | None = None,
) -> Assessment:
    facts = analyze(detections, image_size, calibration, config)
    verdicts = tuple(rule.evaluate(facts) for rule in rules if rule.spec.enabled)
    return Assessment(facts, verdicts)
