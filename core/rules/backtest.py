"""Evaluate a draft rule against facts already stored with past results (no model re-run)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.positioning.facts import SceneFacts
from core.rules.engine import CompiledRule, unevaluated

EXAMPLES_KEPT = 5


@dataclass(slots=True)
class BacktestReport:
    rule: str
    evaluated: int = 0
    passed: int = 0
    failed: int = 0
    not_applicable: int = 0
    errors: int = 0  # results the rule raised on (a bug in the rule, not a verdict)
    error: str | None = None  # the first such error, user-safe
    failed_examples: list[str] = field(default_factory=list)
    passed_examples: list[str] = field(default_factory=list)


def backtest(rule: CompiledRule, results: Iterable[tuple[str, SceneFacts]]) -> BacktestReport:
    report = BacktestReport(rule=rule.spec.name)
    for request_id, facts in results:
        try:
            verdict = rule.evaluate(facts)
        except Exception as exc:  # as in the pipeline: the rule's own failure, reported
            verdict = unevaluated(rule, exc)
        report.evaluated += 1
        if verdict.error is not None:
            report.errors += 1
            report.error = report.error or verdict.error
        elif verdict.passed is None:
            report.not_applicable += 1
        elif verdict.passed:
            report.passed += 1
            if len(report.passed_examples) < EXAMPLES_KEPT:
                report.passed_examples.append(request_id)
        else:
            report.failed += 1
            if len(report.failed_examples) < EXAMPLES_KEPT:
                report.failed_examples.append(request_id)
    return report
