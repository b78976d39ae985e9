"""Rule evaluations per second on one core: the documented example sentences (core.rules.EXAMPLES),
compiled once, evaluated against positioning facts of generated scenes.

    python bench/rules_eval.py [--seconds 3]

Target (rules issue): >= 50,000 rule evaluations/s on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime

from core.models.class_map import ClassMap
from core.models.types import Detection
from core.positioning import analyze
from core.rules import EXAMPLES, compile_rule, parse_rule
from core.synth import render_scene, sample_scene


def scenes(count: int) -> list:
    roles = ClassMap()
    facts = []
    for seed in range(count):
        scene = sample_scene(50_000 + seed, 640)
        _, labels = render_scene(scene, 640, perspective=0.0)
        detections = [
            Detection(lb.class_name, roles.role(lb.class_name), 0.9, lb.box) for lb in labels
        ]
        facts.append(analyze(detections, (640, 640)))
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rules = [compile_rule(parse_rule(sentence), f"r{i}") for i, sentence in enumerate(EXAMPLES)]
    facts = scenes(50)
    mugs = sum(f.mug_count for f in facts)
    evaluations = 0
    started = time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        for scene in facts:
            for rule in rules:
                rule.evaluate(scene)
            evaluations += len(rules)
    elapsed = time.perf_counter() - started
    rate = evaluations / elapsed
    print(
        f"machine: {platform.node()} ({os.cpu_count()} cores), {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    print(f"{'rules':>6} {'scenes':>7} {'mugs/scene':>11} {'evaluations':>12} {'evals/s':>10}")
    print(
        f"{len(rules):>6} {len(facts):>7} {mugs / len(facts):>11.2f} {evaluations:>12} "
        f"{rate:>10,.0f}"
    )
    print(f"target >= 50,000/s: {'met' if rate >= 50_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
