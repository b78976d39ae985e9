"""Positioning facts scored against the generator's ground truth: edge-distance error, on-coaster
agreement and missed mugs, the figures the positioning targets are stated in. One scorer serves the
accuracy tests and `bench/positioning_accuracy.py`, so both measure the same thing."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.positioning.facts import SceneFacts
from core.positioning.geometry import Box, centre, iou

EDGE_RANGE_CM = 30.0  # edge errors count for mugs this close to an edge: where rules look
MATCH_PX = 10.0  # a found mug further than this from a true one (centre to centre) is not it


@dataclass
class AccuracyTally:
    edge_errors_cm: list[float] = field(default_factory=list)
    coaster_right: int = 0
    compared: int = 0  # true mugs a found mug was matched to
    missed: int = 0  # true mugs nothing was found for

    def add(self, facts: SceneFacts, truth: dict, truth_boxes: Sequence[Box]) -> None:
        """Score one scene: `truth` is `Scene.ground_truth()`, `truth_boxes` its mug boxes in the
        same order."""
        for expected, box in zip(truth["mugs"], truth_boxes, strict=True):
            found = min(
                facts.mugs, default=None, key=lambda m: math.dist(centre(m.box), centre(box))
            )
            if found is None or math.dist(centre(found.box), centre(box)) > MATCH_PX:
                self.missed += 1
                continue
            self.compared += 1
            self.coaster_right += found.on_coaster == expected["on_coaster"]
            if found.edge_distance_cm is not None and expected["edge_distance_cm"] < EDGE_RANGE_CM:
                self.edge_errors_cm.append(
                    abs(found.edge_distance_cm - expected["edge_distance_cm"])
                )

    @property
    def median_edge_error_cm(self) -> float:
        """NaN when no mug was compared."""
        return statistics.median(self.edge_errors_cm) if self.edge_errors_cm else math.nan

    @property
    def p90_edge_error_cm(self) -> float:
        errors = sorted(self.edge_errors_cm)
        return errors[int(0.9 * len(errors))] if errors else math.nan

    @property
    def coaster_accuracy(self) -> float:
        return self.coaster_right / self.compared if self.compared else math.nan


@dataclass
class DetectionTally:
    """Per-class detection counts against drawn labels: a detection matches an unmatched label of
    its role at IoU >= 0.5 (greedy, most confident first), as mAP50 counts a hit."""

    found: dict[str, int] = field(default_factory=dict)  # true positives per role
    labelled: dict[str, int] = field(default_factory=dict)
    reported: dict[str, int] = field(default_factory=dict)

    def add(
        self, detections: Sequence[tuple[str, float, Box]], labels: Sequence[tuple[str, Box]]
    ) -> None:
        """`detections`: (role, confidence, box); `labels`: (role, box)."""
        taken: set[int] = set()
        for role, _, box in sorted(detections, key=lambda d: -d[1]):
            self.reported[role] = self.reported.get(role, 0) + 1
            best = max(
                (
                    (iou(box, lbox), j)
                    for j, (lrole, lbox) in enumerate(labels)
                    if lrole == role and j not in taken
                ),
                default=(0.0, -1),
            )
            if best[0] >= 0.5:
                taken.add(best[1])
                self.found[role] = self.found.get(role, 0) + 1
        for role, _ in labels:
            self.labelled[role] = self.labelled.get(role, 0) + 1

    def recall(self, role: str) -> float:
        total = self.labelled.get(role, 0)
        return self.found.get(role, 0) / total if total else math.nan

    def precision(self, role: str) -> float:
        total = self.reported.get(role, 0)
        return self.found.get(role, 0) / total if total else math.nan
