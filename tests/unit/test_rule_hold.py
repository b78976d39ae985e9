"""Rules with a hold: the time clause parses into RuleSpec.hold, reads back, and is refused clearly
outside Hold's range; a rule's tags are refused by pydantic with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.rules import EXAMPLES, RuleSpec, RuleSyntaxError, check_limits, parse_rule
from core.rules.explain import explain
from core.rules.spec import Hold
from tests.unit.test_rules import leaves


@pytest.mark.parametrize(
    ("sentence", "seconds", "frames", "severity"),
    [
        ("Every mug must be on a coaster for at least 30 seconds.", 30, None, "warning"),
        ("No mug off its coaster for more than 30 seconds (critical).", 30, None, "critical"),
        (
            "Mugs must be at least 5 cm from the table edge for at least 3 frames.",
            None,
            3,
            "warning",
        ),
        (
            "If a mug is off its coaster and within 3 cm of the edge for 10 seconds, alert (critical).",
            10,
            None,
            "critical",
        ),
        ("At most 2 mugs per table for at least 1 minute.", 60, None, "warning"),
        ("Mugs must be on a coaster for over 30 s.", 30, None, "warning"),
        ("Mugs must be on a coaster for 10 sec.", 10, None, "warning"),
        ("Mugs must be on a coaster for 10 secs (high).", 10, None, "high"),
        ("Mugs must be on a coaster for 1 second.", 1, None, "warning"),
        ("Mugs must be on a coaster for 1.5 minutes.", 90, None, "warning"),
        ("Mugs must be on a coaster for 2 min.", 120, None, "warning"),
        ("Mugs must be on a coaster for 2 mins.", 120, None, "warning"),
        ("Mugs must be on a coaster for longer than 1 hour.", 3600, None, "warning"),
        ("Mugs must be on a coaster for 2 hours.", 7200, None, "warning"),
        ("Mugs must be on a coaster for 24 h.", 86_400, None, "warning"),
        ("Mugs must be on a coaster for 1 frame.", None, 1, "warning"),
        # frames are counted: "more than 3" is 4; time is measured: "more than 30 s" is 30 s
        ("Mugs must be on a coaster for more than 3 frames.", None, 4, "warning"),
        ("Flag detections below 60% confidence for review for 5 frames.", None, 5, "warning"),
    ],
)
def test_a_time_clause_sets_the_hold(sentence, seconds, frames, severity) -> None:
    spec = parse_rule(sentence)
    assert spec.hold == Hold(seconds=seconds, frames=frames)
    assert spec.severity == severity
    assert RuleSpec.model_validate(spec.model_dump()) == spec  # stored and read back as JSON


def test_a_hold_leaves_the_conditions_as_they_were() -> None:
    """ "at least" before a distance is still the distance; only the one after "for" is the hold."""
    pairs = [
        ("Mugs must be at least 5 cm from the table edge.", "for at least 3 frames"),
        ("No mug within 10 cm of a laptop.", "for 10 seconds"),
        ("If a mug is off its coaster and within 3 cm of the edge, alert.", "for 10 seconds"),
        ("At most 2 mugs per table.", "for at least 1 minute"),
        ("Flag detections below 60% confidence for review.", "for 3 frames"),
    ]
    for plain, clause in pairs:
        held_sentence = (
            plain.replace(",", f" {clause},") if "," in plain else f"{plain[:-1]} {clause}."
        )
        plain_spec, held = parse_rule(plain), parse_rule(held_sentence)
        assert plain_spec.hold is None
        assert held.hold is not None, held_sentence
        assert leaves(held) == leaves(plain_spec)
        assert held.model_dump(exclude={"hold", "name", "description"}) == plain_spec.model_dump(
            exclude={"hold", "name", "description"}
        )


def test_an_example_shows_the_hold() -> None:
    assert any(parse_rule(sentence).hold for sentence in EXAMPLES)


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        (
            "Every mug must be on a coaster for at least 30 seconds.",
            "every mug must satisfy: on coaster is true [warning], once it has held for 30 s",
        ),
        (
            "Mugs must be at least 5 cm from the table edge for at least 3 frames.",
            "every mug must satisfy: edge distance ≥ 5 cm [warning], once it has held for 3 frames",
        ),
        (
            "Mugs must be on a coaster for 1 frame.",
            "every mug must satisfy: on coaster is true [warning], once it has held for 1 frame",
        ),
        (
            "At most 2 mugs per table for 90 seconds.",
            "the scene must satisfy: mugs per table ≤ 2 [warning], once it has held for 90 s",
        ),
        (
            "At most 2 mugs per table for 2 hours.",
            "the scene must satisfy: mugs per table ≤ 2 [warning], once it has held for 2 h",
        ),
        (
            "If a mug is off its coaster for 2 minutes, alert (critical).",
            "every mug is flagged when: on coaster is false [critical], once it has held for 2 min;"
            " then: alert",
        ),
    ],
)
def test_the_explanation_states_the_hold(sentence: str, expected: str) -> None:
    assert explain(parse_rule(sentence)) == expected


@pytest.mark.parametrize(
    ("sentence", "column", "expected"),
    [
        ("Mugs must be on a coaster for 0 seconds.", 31, "a time over 0 s and up to 24 h"),
        ("Mugs must be on a coaster for 25 hours.", 31, "a time over 0 s and up to 24 h"),
        (
            "Mugs must be on a coaster for 1" + "0" * 400 + " s.",
            31,
            "a time over 0 s and up to 24 h",
        ),
        ("Mugs must be on a coaster for 0 frames.", 31, "a whole number of frames from 1 to 1000"),
        (
            "Mugs must be on a coaster for 2.5 frames.",
            31,
            "a whole number of frames from 1 to 1000",
        ),
        (
            "Mugs must be on a coaster for more than 1000 frames.",
            41,
            "a whole number of frames from 1 to 1000",
        ),
        (
            "Mugs must be on a coaster for 30 km.",
            34,
            "a time unit (seconds, minutes, hours, frames)",
        ),
        ("Mugs must be on a coaster for thirty seconds.", 31, "a number"),
        ("Mugs must be on a coaster fr 30 seconds.", 27, "for (a time: for 30 seconds)"),
    ],
)
def test_a_bad_hold_is_refused_where_it_is(sentence: str, column: int, expected: str) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule(sentence)
    error = caught.value
    assert error.column == column
    assert expected in error.expected
    assert error.suggestion in EXAMPLES
    assert "Traceback" not in str(error)


def test_a_conditional_holds_its_condition_not_its_action() -> None:
    """ "alert for 10 seconds" would read as how long to alert: the clause goes before the comma."""
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule("If a mug is off its coaster, alert for 10 seconds.")
    assert caught.value.column == 36


def _tagged(tags: object) -> dict:
    """A raw rule document, as a request body or MongoDB holds it, with these tags."""
    condition = {"fact": "on_coaster", "op": "==", "value": True}
    return {
        "name": "tagged",
        "type": "requirement",
        "scope": "mug",
        "mode": "must_hold",
        "conditions": {"conditions": [condition]},
        "tags": tags,
    }


@pytest.mark.parametrize(
    ("tags", "loc", "kind"),
    [
        ([f"t{i}" for i in range(17)], ("tags",), "too_long"),
        (["front-desk", 3], ("tags", 1), "string_type"),
        (["Front Desk"], ("tags", 0), "string_pattern_mismatch"),
        ("front-desk", ("tags",), "list_type"),
    ],
)
def test_bad_tags_are_refused_by_pydantic_with_the_field_named(tags, loc, kind) -> None:
    """A rule's tags are a flat list of short strings: no recursion and at most 16, so pydantic's
    own error (naming the field and the limit) is as clear as a limit of core.rules.limits."""
    raw = _tagged(tags)
    check_limits(raw)  # nothing for the limits to say
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate(raw)
    [error] = caught.value.errors()
    assert (error["loc"], error["type"]) == (loc, kind)
    if kind == "too_long":
        assert "at most 16 items" in error["msg"]


def test_sixteen_tags_are_accepted() -> None:
    tags = [f"cam-{i}.desk_{i}" for i in range(16)]
    raw = _tagged(tags)
    assert RuleSpec.model_validate(raw).tags == tags
