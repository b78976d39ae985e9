"""Analysis stage: detections -> positioning facts -> rule verdicts, as one pure step."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from core.models.types import Detection
from core.positioning import Calibration, PositioningConfig, SceneFacts, analyze
from core.rules import CompiledRule, Verdict
from core.rules.engine import unevaluated

log = logging.getLogger(__name__)
_reported: set[tuple[str, int]] = set()  # rule versions whose failure was logged in full


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
    return evaluate_rules(analyze(detections, image_size, calibration, config), rules)


def evaluate_rules(facts: SceneFacts, rules: Sequence[CompiledRule]) -> Assessment:
    """The verdicts of the enabled rules on positioning facts (the second half of `assess`)."""
    verdicts = tuple(_evaluate(rule, facts) for rule in rules if rule.spec.enabled)
    return Assessment(facts, verdicts)


def _evaluate(rule: CompiledRule, facts: SceneFacts) -> Verdict:
    """One rule's verdict; a rule that raises gets an error verdict so that it cannot fail the
    image or the other rules' verdicts."""
    try:
        return rule.evaluate(facts)
    except Exception as exc:  # any bug in one rule stays with that rule
        key = (rule.rule_id, rule.version)
        if key not in _reported:  # a bad rule fails on every image: the traceback once is enough
            _reported.add(key)
            log.warning("rule %s version %s could not be evaluated", *key, exc_info=True)
        else:
            log.debug("rule %s version %s could not be evaluated: %r", *key, exc)
        return unevaluated(rule, exc)
