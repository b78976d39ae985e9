"""Facts survive storage as JSON, and a draft rule can be back-tested against them."""

from __future__ import annotations

import orjson

from core.positioning import analyze
from core.positioning.serialize import facts_from_dict, facts_to_dict
from core.rules import compile_rule, parse_rule
from core.rules.backtest import backtest
from core.rules.spec import Group, Leaf
from tests.unit.test_positioning import CALIBRATED, IMAGE, TABLE, coaster, det, mug


def test_facts_round_trip_through_json() -> None:
    facts = analyze(
        [
            TABLE,
            mug(22, 75),
            mug(110, 50),
            coaster(110.5, 50),
            det("hazard", 120, 40, 153, 63, name="laptop"),
        ],
        IMAGE,
        CALIBRATED,
    )
    stored = orjson.loads(orjson.dumps(facts_to_dict(facts)))
    assert facts_from_dict(stored) == facts


def test_backtest_counts_and_examples() -> None:
    good = analyze([TABLE, mug(100, 75), coaster(100, 75)], IMAGE, CALIBRATED)
    bad = analyze([TABLE, mug(22, 75)], IMAGE, CALIBRATED)
    history = [(f"req-{i}", good if i % 3 else bad) for i in range(9)]
    rule = compile_rule(parse_rule("Every mug must be on a coaster."), "draft")
    report = backtest(rule, history)
    assert (report.evaluated, report.passed, report.failed) == (9, 6, 3)
    assert report.failed_examples == ["req-0", "req-3", "req-6"]
    assert report.passed_examples[:2] == ["req-1", "req-2"]
    zone = backtest(
        compile_rule(parse_rule("Mugs must be inside the placement zone."), "z"), history
    )
    assert zone.not_applicable == 9


def test_a_rule_that_raises_is_counted_as_an_error_not_a_crash() -> None:
    facts = analyze([TABLE, mug(22, 75)], IMAGE, CALIBRATED)
    spec = parse_rule("Handles should face left.").model_copy(
        update={
            "conditions": Group(conditions=[Leaf(fact="handle", op="==", value="left", unit="px")])
        }
    )
    report = backtest(compile_rule(spec, "boom"), [("req-1", facts), ("req-2", facts)])
    assert (report.evaluated, report.errors, report.passed, report.failed) == (2, 2, 0, 0)
    assert report.error == "rule could not be evaluated: ValueError"
