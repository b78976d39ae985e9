"""How far apart two runs of a detector put their boxes on the same images: how a faster path
(fp16, a TensorRT engine, input prepared on the GPU) is held to the fp32 CPU path, in tests and in
bench/gpu_check.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.models.types import Box, Detection

MATCH_IOU = 0.7


@dataclass(slots=True)
class Agreement:
    largest_delta_px: float = 0.0  # largest difference of any box coordinate between matches
    compared: int = 0  # detections matched (counted from both sides)
    unmatched: list[Detection] = field(default_factory=list)


def box_agreement(
    reference: list[list[Detection]], other: list[list[Detection]], floor: float = 0.3
) -> Agreement:
    """Each detection scoring at least `floor` in either run, per image, matched to the
    same-class detection of the other run it overlaps most (IoU >= 0.7). The floor keeps out
    detections near the operating threshold, which may fall on either side of it in two runs."""
    agreement = Agreement()
    for first, second in [(reference, other), (other, reference)]:
        for mine, theirs in zip(first, second, strict=True):
            for detection in (d for d in mine if d.confidence >= floor):
                same = [d for d in theirs if d.class_name == detection.class_name]
                match = max(same, key=lambda d: _iou(d.box, detection.box), default=None)
                if match is None or _iou(match.box, detection.box) < MATCH_IOU:
                    agreement.unmatched.append(detection)
                    continue
                delta = max(abs(a - b) for a, b in zip(match.box, detection.box, strict=True))
                agreement.largest_delta_px = max(agreement.largest_delta_px, delta)
                agreement.compared += 1
    return agreement


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
