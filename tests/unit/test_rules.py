"""Rules: every sentence family parses to the expected structure and evaluates correctly."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from pydantic import ValidationError

from core.positioning import Calibration, analyze
from core.rules import (
    EXAMPLES,
    CompiledRule,
    RuleSpec,
    RuleSpecError,
    RuleSyntaxError,
    RuleTooComplex,
    check_limits,
    compile_rule,
    parse_rule,
)
from core.rules.limits import (
    MAX_ACTIONS,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_KEY_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    MAX_VALUE_CHARS,
)
from schemas.messages import VerdictOut
from tests.unit.test_positioning import CALIBRATED, IMAGE, SCALE, TABLE, coaster, det, mug


def leaves(spec: RuleSpec) -> list[dict]:
    out = []

    def walk(group: dict) -> None:
        for c in group["conditions"]:
            walk(c) if "conditions" in c else out.append(c)

    walk(spec.conditions.model_dump(exclude_defaults=True))
    return out


@pytest.mark.parametrize(
    ("sentence", "kind", "scope", "mode", "expected", "negate"),
    [
        (
            "Every mug must be on a coaster.",
            "requirement",
            "mug",
            "must_hold",
            [{"fact": "on_coaster", "op": "==", "value": True}],
            False,
        ),
        (
            "Mugs must be at least 5 cm from the table edge.",
            "requirement",
            "mug",
            "must_hold",
            [{"fact": "edge_distance", "op": ">=", "value": 5.0, "unit": "cm"}],
            False,
        ),
        (
            "No mug within 10 cm of a laptop.",
            "prohibition",
            "mug",
            "must_hold",
            [
                {
                    "fact": "hazard_distance",
                    "op": "<=",
                    "value": 10.0,
                    "unit": "cm",
                    "target": "laptop",
                }
            ],
            True,
        ),
        (
            "At most 2 mugs per table.",
            "limit",
            "scene",
            "must_hold",
            [{"fact": "mugs_per_table", "op": "<=", "value": 2.0}],
            False,
        ),
        (
            "Handles should face right.",
            "requirement",
            "mug",
            "must_hold",
            [{"fact": "handle", "op": "==", "value": "right"}],
            False,
        ),
        (
            "Mugs must be inside the placement zone.",
            "requirement",
            "mug",
            "must_hold",
            [{"fact": "in_zone", "op": "==", "value": True}],
            False,
        ),
        (
            "Flag detections below 60% confidence for review.",
            "review",
            "detection",
            "flag_when",
            [{"fact": "confidence", "op": "<", "value": 0.6, "unit": "%"}],
            False,
        ),
        (
            "If a mug is off its coaster and within 3 cm of the edge, alert (critical).",
            "conditional",
            "mug",
            "flag_when",
            [
                {"fact": "on_coaster", "op": "==", "value": False},
                {"fact": "edge_distance", "op": "<=", "value": 3.0, "unit": "cm"},
            ],
            False,
        ),
        # synonyms, units, and/or/not
        (
            "Cups should be at least 20 mm away from the border.",
            "requirement",
            "mug",
            "must_hold",
            [{"fact": "edge_distance", "op": ">=", "value": 20.0, "unit": "mm"}],
            False,
        ),
        (
            "No cup may be within 4 in of a keyboard or on a coaster.",
            "prohibition",
            "mug",
            "must_hold",
            [
                {
                    "fact": "hazard_distance",
                    "op": "<=",
                    "value": 4.0,
                    "unit": "in",
                    "target": "keyboard",
                },
                {"fact": "on_coaster", "op": "==", "value": True},
            ],
            True,
        ),
        (
            "Mugs must not be outside the placement zone.",
            "requirement",
            "mug",
            "must_hold",
            [{"fact": "in_zone", "op": "==", "value": False}],
            True,
        ),
        (
            "Each mug should be at least 40 px from the edge.",
            "requirement",
            "mug",
            "must_hold",
            [{"fact": "edge_distance", "op": ">=", "value": 40.0, "unit": "px"}],
            False,
        ),
    ],
)
def test_sentence_families_parse(sentence, kind, scope, mode, expected, negate) -> None:
    spec = parse_rule(sentence)
    assert (spec.type, spec.scope, spec.mode) == (kind, scope, mode)
    assert leaves(spec) == expected
    assert spec.conditions.negate is negate
    assert spec.description == sentence


def test_severity_suffix_and_actions() -> None:
    assert parse_rule("Every mug must be on a coaster (critical).").severity == "critical"
    conditional = parse_rule(
        "If a mug is off its coaster and within 3 cm of the edge, alert (critical)."
    )
    assert conditional.severity == "critical"
    assert [a.type for a in conditional.actions] == ["alert"]
    assert [
        a.type for a in parse_rule("Flag detections below 60% confidence for review.").actions
    ] == ["review"]


# A scene: mug 0 overhangs the edge off any coaster; mug 1 stands on a coaster near a laptop.
SCENE = [
    TABLE,
    mug(22, 75),
    mug(110, 50),
    coaster(110.5, 50),
    det("hazard", 120, 40, 153, 63, name="laptop", confidence=0.55),
]


def evaluate(sentence: str, calibration: Calibration | None = CALIBRATED):
    return compile_rule(parse_rule(sentence), "r1", 3).evaluate(analyze(SCENE, IMAGE, calibration))


def test_every_family_evaluates_on_hand_built_facts() -> None:
    coaster_rule = evaluate("Every mug must be on a coaster.")
    assert (coaster_rule.passed, coaster_rule.subjects) == (False, (0,))
    edge = evaluate("Mugs must be at least 5 cm from the table edge.")
    assert (edge.passed, edge.subjects, edge.measured, edge.threshold) == (False, (0,), -2.25, 5.0)
    assert "distance to the table edge -2.25 cm" in edge.message
    laptop = evaluate("No mug within 10 cm of a laptop.")
    assert (laptop.passed, laptop.subjects, laptop.measured) == (False, (1,), 5.75)
    assert evaluate("No mug within 5 cm of a laptop.").passed is True
    assert evaluate("At most 2 mugs per table.").passed is True
    assert evaluate("At most 1 mug per table.").passed is False
    assert evaluate("Handles should face right.").passed is None  # no handle directions known
    assert evaluate("Mugs must be inside the placement zone.").passed is None  # no zones
    review = evaluate("Flag detections below 60% confidence for review.")
    assert (review.passed, review.subjects, review.actions) == (False, (4,), ("review",))
    alert = evaluate("If a mug is off its coaster and within 3 cm of the edge, alert (critical).")
    assert (alert.passed, alert.subjects, alert.actions, alert.severity) == (
        False,
        (0,),
        ("alert",),
        "critical",
    )
    assert (alert.rule_id, alert.version) == ("r1", 3)


def test_rules_about_what_the_model_cannot_see_are_not_applicable_never_failed() -> None:
    """A COCO model has no coaster class: off-coaster is unknown, not a failure (and the score
    does not lose the coaster term); a model without hazards cannot vouch for hazard distances."""
    scene = [d for d in SCENE if d.role != "coaster"]  # what such a model reports
    blind = analyze(scene, IMAGE, CALIBRATED, unseen=frozenset({"coaster"}))
    sighted = analyze(scene, IMAGE, CALIBRATED)
    assert [m.on_coaster for m in blind.mugs] == [None, None]
    assert [m.on_coaster for m in sighted.mugs] == [False, False]
    assert all("coaster" not in m.failing for m in blind.mugs)
    assert blind.mugs[1].score == sighted.mugs[1].score + 25
    assert blind.unmatched_coasters is None
    empty_coasters = RuleSpec.model_validate(
        {
            "name": "no empty coasters",
            "type": "requirement",
            "scope": "scene",
            "mode": "must_hold",
            "conditions": {"conditions": [{"fact": "unmatched_coasters", "op": "==", "value": 0}]},
        }
    )
    for spec in (parse_rule("Every mug must be on a coaster."), empty_coasters):
        verdict = compile_rule(spec, "c").evaluate(blind)
        assert verdict.passed is None, spec.name
        assert "the model cannot see coasters" in verdict.message
    either = compile_rule(
        parse_rule("If a mug is off its coaster and within 3 cm of the edge, alert."), "e"
    ).evaluate(blind)
    assert (either.passed, either.actions) == (True, ())  # mug 0: unknown, no alert on a guess
    edge = compile_rule(parse_rule("Mugs must be at least 5 cm from the table edge."), "t")
    assert edge.evaluate(blind).passed is False  # what the model does see still fails
    no_hazards = analyze(SCENE, IMAGE, CALIBRATED, unseen=frozenset({"hazard"}))
    laptop = compile_rule(parse_rule("No mug within 10 cm of a laptop."), "h").evaluate(no_hazards)
    assert laptop.passed is None
    assert "cannot see hazards" in laptop.message


def test_units_convert() -> None:
    assert evaluate("Mugs must be at least 20 mm from the edge.").subjects == (0,)
    assert evaluate("Mugs must be at least 1 in from the edge.").subjects == (0,)
    # 40 px at 4 px/cm is 10 cm: mug 0 overhangs, mug 1 is 25.75 cm away.
    assert evaluate("Mugs must be at least 40 px from the edge.").subjects == (0,)
    # Without calibration the scale comes from the mugs and coaster, and agrees.
    assert evaluate("Mugs must be at least 40 px from the edge.", None).subjects == (0,)
    assert evaluate("Mugs must be at least 30 cm from the edge.", None).subjects == (0, 1)


def test_zone_rule_with_zones_configured() -> None:
    zone = tuple((x * SCALE, y * SCALE) for x, y in ((90, 30), (130, 30), (130, 70), (90, 70)))
    verdict = evaluate(
        "Mugs must be inside the placement zone.", Calibration(SCALE, {"tray": zone})
    )
    assert (verdict.passed, verdict.subjects) == (False, (0,))


def test_json_rules_are_accepted_and_checked() -> None:
    spec = RuleSpec.model_validate(
        {
            "name": "keep clear of edges",
            "type": "requirement",
            "scope": "mug",
            "mode": "must_hold",
            "severity": "high",
            "conditions": {
                "logic": "all",
                "conditions": [{"fact": "edge_distance", "op": ">=", "value": 3, "unit": "cm"}],
            },
        }
    )
    assert compile_rule(spec, "j1").evaluate(analyze(SCENE, IMAGE, CALIBRATED)).subjects == (0,)
    unknown_fact = {
        **spec.model_dump(),
        "conditions": {"conditions": [{"fact": "temperature", "op": ">", "value": 3}]},
    }
    with pytest.raises(RuleSpecError, match="temperature"):
        compile_rule(RuleSpec.model_validate(unknown_fact), "j2")
    with pytest.raises(RuleSpecError, match="true/false"):
        compile_rule(
            RuleSpec.model_validate(
                {
                    **spec.model_dump(),
                    "conditions": {"conditions": [{"fact": "on_coaster", "op": "==", "value": 3}]},
                }
            ),
            "j3",
        )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_condition_value_must_be_finite(value: float) -> None:
    """NaN compares false with everything: a rule holding one would pass or fail every mug."""
    rule = {
        "name": "edge",
        "type": "requirement",
        "scope": "mug",
        "mode": "must_hold",
        "conditions": {"conditions": [{"fact": "edge_distance", "op": ">=", "value": value}]},
    }
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate(rule)
    assert "finite_number" in {error["type"] for error in caught.value.errors()}


def test_a_number_too_large_for_a_float_is_refused_in_a_sentence() -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rule("Mugs must be at least 1" + "0" * 309 + " cm from the table edge.")


MALFORMED = [
    "",
    "Mugs must be near the edge.",
    "Every mug must be on",
    "At most two mugs per table.",
    "Mugs must be at least 5 from the edge.",
    "Mugs must be at least five cm from the edge.",
    "No mug within 10 cm of a toaster.",
    "Every spoon must be on a coaster.",
    "Mugs must be at least 5 km from the edge.",
    "Handles should face sideways.",
    "Flag detections below confidence.",
    "If a mug is off its coaster,",
    "Mugs must be on a coaster (urgent).",
    "At most 2 mugs per room.",
    "Mugs must be inside the kitchen.",
    "must be on a coaster",
    "Every mug must be on a coaster and",
    "Mugs must be at least 5 cm from the edge or or on a coaster.",
    "Mugs must be within of a laptop.",
    "Flag detections below 60 confidence.",
    "If a mug is on its coaster, explode.",
    "Every mug must be on a coaster!!",
]


@pytest.mark.parametrize("sentence", MALFORMED)
def test_malformed_sentences_get_helpful_errors(sentence: str) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule(sentence)
    error = caught.value
    assert error.column >= 1
    assert error.suggestion  # a supported phrasing to start from
    text = str(error)
    assert "cannot understand the rule at column" in text
    assert "Traceback" not in text
    assert error.as_dict()["suggestion"] == error.suggestion


def test_error_points_at_the_problem_and_lists_expectations() -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule("At most two mugs per table.")
    assert caught.value.column == 9
    assert "a number" in caught.value.expected
    assert caught.value.suggestion == "At most 2 mugs per table."


def test_assessment_runs_positioning_then_enabled_rules() -> None:
    from core.pipeline.assess import assess

    rules = [
        compile_rule(parse_rule("Every mug must be on a coaster."), "a"),
        compile_rule(
            parse_rule("At most 1 mug per table.").model_copy(update={"enabled": False}), "b"
        ),
    ]
    result = assess(SCENE, IMAGE, rules, CALIBRATED)
    assert result.facts.mug_count == 2
    assert [v.rule_id for v in result.verdicts] == ["a"]
    assert [v.rule_id for v in result.failed] == ["a"]


def _json_rule(conditions: dict, **fields: object) -> dict:
    return {
        "name": "limits",
        "type": "requirement",
        "scope": "mug",
        "mode": "must_hold",
        "conditions": conditions,
        **fields,
    }


ON_COASTER = {"fact": "on_coaster", "op": "==", "value": True}


def _nested(depth: int) -> dict:
    group: dict = {"conditions": [ON_COASTER]}
    for _ in range(depth - 1):
        group = {"conditions": [group]}
    return group


def _refused(raw: dict) -> RuleTooComplex:
    """The limit error, from the raw document and (when it can be built) from a RuleSpec."""
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate(raw)
    cause = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, RuleTooComplex)
    with pytest.raises(RuleTooComplex) as direct:
        check_limits(raw)
    assert str(direct.value) == str(cause)
    return cause


def test_limits_accept_what_people_write() -> None:
    for sentence in EXAMPLES:
        check_limits(parse_rule(sentence))
    spec = RuleSpec.model_validate(
        _json_rule(
            _nested(MAX_DEPTH),
            name="n" * MAX_NAME_CHARS,
            metadata={f"k{i}": "v" * MAX_TEXT_CHARS for i in range(MAX_ENTRIES)},
        )
    )
    compile_rule(spec, "ok")


def test_depth_over_the_limit_is_refused_with_the_limit_named() -> None:
    error = _refused(_json_rule(_nested(200)))
    assert str(error) == f"conditions nest 200 levels deep; the limit is {MAX_DEPTH}"
    assert error.as_dict() == {"limit": "depth", "maximum": MAX_DEPTH, "actual": 200}
    assert isinstance(error, RuleSpecError)
    assert _refused(_json_rule(_nested(MAX_DEPTH + 1))).actual == MAX_DEPTH + 1
    # deeper than pydantic's own recursion guard: still our error, not a pile of union errors
    assert _refused(_json_rule(_nested(2000))).limit == "depth"


def test_number_of_conditions_over_the_limit_is_refused() -> None:
    wide = {"logic": "any", "conditions": [ON_COASTER] * (MAX_CONDITIONS + 1)}
    error = _refused(_json_rule(wide))
    assert (error.limit, error.actual) == ("conditions", MAX_CONDITIONS + 1)
    assert f"the limit is {MAX_CONDITIONS}" in str(error)
    empty_groups = {"conditions": [{"conditions": []}] * (MAX_CONDITIONS + 1)}  # groups count too
    assert _refused(_json_rule(empty_groups)).limit == "conditions"
    sentence = "Every mug must be " + " or ".join(["on a coaster"] * (MAX_CONDITIONS + 1)) + "."
    with pytest.raises(RuleTooComplex, match="conditions; the limit is"):
        parse_rule(sentence)


@pytest.mark.parametrize(
    ("fields", "conditions", "limit", "maximum"),
    [
        ({"name": "n" * (MAX_NAME_CHARS + 1)}, None, "name_chars", MAX_NAME_CHARS),
        ({"description": "d" * 5000}, None, "description_chars", MAX_TEXT_CHARS),
        ({"metadata": {"note": "x" * 5000}}, None, "metadata_chars", MAX_TEXT_CHARS),
        ({"metadata": {"k" * 100: "x"}}, None, "metadata_key_chars", MAX_KEY_CHARS),
        ({"metadata": {str(i): "x" for i in range(100)}}, None, "metadata", MAX_ENTRIES),
        (
            {"actions": [{"type": "webhook", "params": {"url": "u" * 5000}}]},
            None,
            "action_params_chars",
            MAX_TEXT_CHARS,
        ),
        ({"actions": [{"type": "tag"}] * 20}, None, "actions", MAX_ACTIONS),
        (
            {},
            {"conditions": [{"fact": "handle", "op": "==", "value": "l" * 10_000}]},
            "value_chars",
            MAX_VALUE_CHARS,
        ),
        (
            {},
            {"conditions": [{"fact": "f" * 10_000, "op": "==", "value": True}]},
            "value_chars",
            MAX_VALUE_CHARS,
        ),
    ],
)
def test_text_sizes_over_the_limit_are_refused(fields, conditions, limit, maximum) -> None:
    error = _refused(_json_rule(conditions or {"conditions": [ON_COASTER]}, **fields))
    assert (error.limit, error.maximum) == (limit, maximum)
    assert f"characters; the limit is {maximum}" in str(error) or (
        f"; the limit is {maximum}" in str(error)
    )
    assert len(str(error)) < 200  # the message names sizes, it does not echo the text


def test_a_long_sentence_is_refused_by_its_description() -> None:
    sentence = "Mugs must be at least 5 cm from the edge" + " or on a coaster" * 130 + "."
    with pytest.raises(RuleTooComplex) as caught:
        parse_rule(sentence)
    assert (caught.value.limit, caught.value.maximum) == ("description_chars", MAX_TEXT_CHARS)


def test_a_deeply_negated_sentence_is_refused_with_the_limit_named() -> None:
    sentence = "Every mug must be " + "not (" * 9 + "on a coaster" + ")" * 9 + "."
    with pytest.raises(RuleTooComplex, match="conditions nest 9 levels deep; the limit is 8"):
        parse_rule(sentence)


def _raising_rule(rule_id: str) -> CompiledRule:
    """Passes validation and compilation but raises on every mug once a scale is known: a pixel
    unit on the (text) handle fact makes the engine convert "left" to a number."""
    spec = RuleSpec.model_validate(
        _json_rule({"conditions": [{"fact": "handle", "op": "==", "value": "left", "unit": "px"}]})
    )
    return compile_rule(spec, rule_id, 4)


def test_a_rule_that_raises_gets_an_error_verdict_and_the_others_still_run(caplog) -> None:
    from core.pipeline.assess import assess

    rules = [
        compile_rule(parse_rule("Every mug must be on a coaster (critical)."), "a"),
        _raising_rule("boom"),
        compile_rule(parse_rule("If a mug is off its coaster, alert."), "c"),
    ]
    with pytest.raises(ValueError, match="could not convert"):
        rules[1].evaluate(analyze(SCENE, IMAGE, CALIBRATED))  # the engine itself does raise
    with caplog.at_level("WARNING", logger="core.pipeline.assess"):
        result = assess(SCENE, IMAGE, rules, CALIBRATED)
    assert [v.rule_id for v in result.verdicts] == ["a", "boom", "c"]
    first, broken, last = result.verdicts
    assert (first.passed, first.subjects, first.error) == (False, (0,), None)
    assert (last.passed, last.actions) == (False, ("alert",))
    assert broken.passed is None
    assert broken.error == "rule could not be evaluated: ValueError"
    assert (broken.version, broken.actions, broken.subjects) == (4, (), ())
    assert "could not convert" not in broken.error + broken.message  # no internal text
    assert [v.rule_id for v in result.failed] == ["a", "c"]  # an error is not a failure: no alert
    assert "rule boom version 4 could not be evaluated" in caplog.text
    VerdictOut.model_validate(asdict(broken))  # what the analysis stage publishes
