"""Compile structured rules into predicates over positioning facts, and evaluate them.

Conditions use three-valued logic: a fact that cannot be known (no placement zone configured, no
handle direction reported) makes a condition unknown instead of false, and a rule whose subjects are
all unknown is reported as not applicable (`passed is None`) rather than failed. A missing distance
means "nothing of that kind in the picture": far away, so "at least ... from" holds and "within"
does not — unless the model cannot see that kind of thing at all (`SceneFacts.unseen`): a fact
about a role the model has no class for is unknown, and the message says which role.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.positioning.facts import MugFacts, SceneFacts
from core.rules.errors import RuleSpecError
from core.rules.spec import FACTS, Group, Leaf, RuleSpec

Value = float | bool | str | None
Subject = object
_OPS: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_TO_CM = {"cm": 1.0, "mm": 0.1, "in": 2.54}
_DISTANCES = {"edge_distance", "hazard_distance", "mug_clearance"}
# The role (core.models.class_map.ROLES) a fact needs the model to see.
_NEEDS_ROLE = {
    "on_coaster": "coaster",
    "unmatched_coasters": "coaster",
    "edge_distance": "table",
    "hazard_distance": "hazard",
    "mugs_per_table": "table",
    "min_mugs_per_table": "table",
}
_LABELS = {
    "on_coaster": "on a coaster",
    "edge_distance": "distance to the table edge",
    "hazard_distance": "distance to the {target}",
    "mug_clearance": "clearance to the next mug",
    "in_zone": "inside the placement zone",
    "handle": "handle direction",
    "confidence": "confidence",
    "score": "quality score",
    "mugs_per_table": "mugs on one table",
    "min_mugs_per_table": "mugs on the emptiest table",
    "mug_count": "mugs",
    "unmatched_coasters": "empty coasters",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    rule_id: str
    version: int
    name: str
    passed: bool | None  # None: not applicable to this picture
    severity: str
    measured: Value
    threshold: Value
    unit: str | None
    subjects: tuple[int, ...]  # indices of the failing (or flagged) mugs/detections
    actions: tuple[str, ...]
    message: str
    error: str | None = None  # set when the rule raised while evaluating; passed is then None
    # This picture's own outcome, before the rule's hold (core.tracking.hold); for a rule without
    # a hold it is `passed`. None also where no source state was applied (back-tests).
    instant_passed: bool | None = None


def _mug_accessor(leaf: Leaf) -> Callable[[MugFacts], Value]:
    match leaf.fact:
        case "on_coaster":
            return lambda m: m.on_coaster
        case "edge_distance":
            return lambda m: m.edge_distance_cm
        case "hazard_distance" if leaf.target:
            target = leaf.target
            return lambda m: m.hazard_distances_cm.get(target)
        case "hazard_distance":
            return lambda m: m.hazard_distance_cm
        case "mug_clearance":
            return lambda m: m.nearest_mug_cm
        case "in_zone":
            return lambda m: m.in_zone
        case "handle":
            return lambda m: m.handle
        case "confidence":
            return lambda m: m.confidence
        case "score":
            return lambda m: m.score
    raise RuleSpecError(f"unknown mug fact {leaf.fact!r}")


def _scene_accessor(leaf: Leaf) -> Callable[[SceneFacts], Value]:
    match leaf.fact:
        case "mugs_per_table":
            return lambda s: float(max(s.mugs_per_table, default=s.mug_count))
        case "min_mugs_per_table":
            return lambda s: float(min(s.mugs_per_table, default=s.mug_count))
        case "mug_count":
            return lambda s: float(s.mug_count)
        case "unmatched_coasters":
            return lambda s: None if s.unmatched_coasters is None else float(s.unmatched_coasters)
    raise RuleSpecError(f"unknown scene fact {leaf.fact!r}")


@dataclass(frozen=True, slots=True)
class _Picture:
    """What every condition on one picture shares: its scale and the roles its model cannot see."""

    px_per_cm: float | None
    unseen: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _CompiledLeaf:
    leaf: Leaf
    get: Callable[[Subject], Value]
    threshold: Value  # in cm for distances (px thresholds are converted per picture)

    def test(self, subject: Subject, picture: _Picture) -> tuple[bool | None, Value]:
        if _NEEDS_ROLE.get(self.leaf.fact) in picture.unseen:
            return None, None
        px_per_cm = picture.px_per_cm
        value = self.get(subject)
        threshold = self.threshold
        if self.leaf.unit == "px":
            if px_per_cm is None:
                return None, value
            threshold = float(threshold) / px_per_cm  # type: ignore[arg-type]
        if value is None:
            if self.leaf.fact in _DISTANCES:  # nothing of that kind: far away
                return self.leaf.op in (">", ">=", "!="), None
            return None, None
        return _OPS[self.leaf.op](value, threshold), value


def _compile_leaf(leaf: Leaf, scope: str) -> _CompiledLeaf:
    if leaf.fact not in FACTS[scope]:
        raise RuleSpecError(
            f"fact {leaf.fact!r} does not apply to scope {scope!r}; "
            f"known: {', '.join(FACTS[scope])}"
        )
    expected = FACTS[scope][leaf.fact]
    if expected is bool and not isinstance(leaf.value, bool):
        raise RuleSpecError(f"{leaf.fact} compares with true/false, not {leaf.value!r}")
    if expected is float and (
        isinstance(leaf.value, bool) or not isinstance(leaf.value, int | float)
    ):
        raise RuleSpecError(f"{leaf.fact} compares with a number, not {leaf.value!r}")
    threshold: Value = leaf.value
    if leaf.unit in _TO_CM:
        if leaf.fact not in _DISTANCES:
            raise RuleSpecError(f"{leaf.fact} is not a distance; unit {leaf.unit} does not apply")
        threshold = float(leaf.value) * _TO_CM[leaf.unit]  # type: ignore[arg-type]
    get = (
        _mug_accessor(leaf)
        if scope == "mug"
        else (_scene_accessor(leaf) if scope == "scene" else (lambda confidence: confidence))
    )
    return _CompiledLeaf(leaf, get, threshold)  # type: ignore[arg-type]


Predicate = Callable[[Subject, _Picture, list[tuple[_CompiledLeaf, Value]]], bool | None]


def _compile_group(group: Group, scope: str, leaves: list[_CompiledLeaf]) -> Predicate:
    parts: list[Predicate] = []
    for condition in group.conditions:
        if isinstance(condition, Leaf):
            compiled = _compile_leaf(condition, scope)
            leaves.append(compiled)

            def test(subject, picture, seen, compiled=compiled):
                result, value = compiled.test(subject, picture)
                seen.append((compiled, value))
                return result

            parts.append(test)
        else:
            parts.append(_compile_group(condition, scope, leaves))
    combine_all = group.logic == "all"

    def evaluate(subject: Subject, picture: _Picture, seen: list) -> bool | None:
        unknown = False
        for part in parts:
            result = part(subject, picture, seen)
            if result is None:
                unknown = True
            elif result is not combine_all:  # False in an "all", True in an "any" decides
                outcome: bool | None = result
                break
        else:
            outcome = None if unknown else combine_all
        if outcome is None or not group.negate:
            return outcome
        return not outcome

    return evaluate


class CompiledRule:
    def __init__(self, spec: RuleSpec, rule_id: str, version: int = 1) -> None:
        self.spec, self.rule_id, self.version = spec, rule_id, version
        self._leaves: list[_CompiledLeaf] = []
        self._predicate = _compile_group(spec.conditions, spec.scope, self._leaves)
        self._actions = tuple(action.type for action in spec.actions)

    def _subjects(self, facts: SceneFacts) -> Sequence[Subject]:
        if self.spec.scope == "mug":
            return facts.mugs
        if self.spec.scope == "scene":
            return (facts,)
        return facts.confidences

    def evaluate(self, facts: SceneFacts) -> Verdict:
        picture = _Picture(facts.scale.px_per_cm if facts.scale else None, facts.unseen)
        subjects = self._subjects(facts)
        flag = self.spec.mode == "flag_when"
        hits: list[int] = []
        known = 0
        evidence: Value = None
        closest: Value = None
        for index, subject in enumerate(subjects):
            seen: list[tuple[_CompiledLeaf, Value]] = []
            result = self._predicate(subject, picture, seen)
            value = next((v for leaf, v in seen if v is not None), None)
            if result is None:
                continue
            known += 1
            if result is flag:  # flagged, or failed a must-hold rule
                hits.append(index)
                evidence = value if evidence is None else evidence
            elif closest is None:
                closest = value
        passed: bool | None = not hits if known or not subjects else None
        if subjects and not known:
            passed = None
        first = self._leaves[0] if self._leaves else None
        return Verdict(
            rule_id=self.rule_id,
            version=self.version,
            name=self.spec.name,
            passed=passed,
            severity=self.spec.severity,
            measured=evidence if hits else closest,
            threshold=first.leaf.value if first else None,
            unit=first.leaf.unit if first else None,
            subjects=tuple(hits),
            actions=self._actions if hits else (),
            message=self._message(passed, hits, len(subjects), evidence, first, facts.unseen),
        )

    def _message(
        self,
        passed: bool | None,
        hits: list[int],
        total: int,
        evidence: Value,
        first: _CompiledLeaf | None,
        unseen: tuple[str, ...],
    ) -> str:
        noun = {"mug": "mug", "scene": "picture", "detection": "detection"}[self.spec.scope]
        if passed is None:
            blind = sorted({_NEEDS_ROLE.get(c.leaf.fact) for c in self._leaves} & set(unseen))
            if blind:
                roles = " or ".join(f"{role}s" for role in blind)
                return f"{self.spec.name}: not applicable (the model cannot see {roles})"
            return f"{self.spec.name}: not applicable to this picture (a needed fact is unknown)"
        if total == 0:
            return f"{self.spec.name}: no {noun}s to check"
        if passed:
            return f"{self.spec.name}: all {total} {noun}(s) comply"
        verb = "flagged" if self.spec.mode == "flag_when" else "fail"
        detail = ""
        if first is not None and evidence is not None:
            label = _LABELS[first.leaf.fact].format(target=first.leaf.target or "hazard")
            unit = "cm" if first.leaf.unit in _TO_CM else (first.leaf.unit or "")
            shown = (
                f"{evidence:.2f}".rstrip("0").rstrip(".")
                if isinstance(evidence, float)
                else evidence
            )
            limit = first.leaf.value
            detail = (
                f" ({noun} #{hits[0]}: {label} {shown}{' ' + unit if unit and unit != '%' else ''}"
            )
            negated = "not " if self.spec.conditions.negate else ""
            detail += f", rule: {negated}{first.leaf.op} {limit}{' ' + first.leaf.unit if first.leaf.unit else ''})"
        return f"{self.spec.name}: {len(hits)} of {total} {noun}(s) {verb}{detail}"


def unevaluated(rule: CompiledRule, exc: BaseException) -> Verdict:
    """The verdict of a rule that raised: not applicable, no actions, and an error that names only
    the exception's type (its text may carry internals and goes to the log instead)."""
    return Verdict(
        rule_id=rule.rule_id,
        version=rule.version,
        name=rule.spec.name,
        passed=None,
        severity=rule.spec.severity,
        measured=None,
        threshold=None,
        unit=None,
        subjects=(),
        actions=(),
        message=f"{rule.spec.name}: could not be evaluated",
        error=f"rule could not be evaluated: {type(exc).__name__}",
    )


def compile_rule(spec: RuleSpec, rule_id: str, version: int = 1) -> CompiledRule:
    return CompiledRule(spec, rule_id, version)
