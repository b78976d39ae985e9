"""Positioning accuracy against generator ground truth, with ground-truth boxes and with the
shipped detector's boxes.

    python bench/positioning_accuracy.py [--scenes 120] [--perspective 0.0] [--style holdout]

Scenes use seeds never used in training. Edge errors are compared for mugs within 30 cm of an edge
(the distances rules care about); a mug the detector misses is counted as missed, not as an error.
`--style holdout` draws the same layouts in the look training never sees
(core.synth.holdout_style); the detector's mug recall and coaster precision and recall (IoU >= 0.5)
are reported for either style.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.models.backends import TorchBackend
from core.models.class_map import ClassMap
from core.models.detector import Detector, DetectorConfig
from core.models.manifest import read_manifest
from core.models.types import Detection
from core.positioning import analyze
from core.synth import render_scene, sample_scene
from core.synth.accuracy import AccuracyTally, DetectionTally
from core.synth.holdout_style import render_holdout

SEED_BASE = 70_000
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models" / "mugdet-synth" / "1.1.0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--perspective", type=float, default=0.0)
    parser.add_argument("--model-dir", type=Path, help="a model folder (default: the shipped one)")
    parser.add_argument(
        "--input-size", type=int, default=None, help="detector input (default: the manifest's)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (fp32 either way)")
    parser.add_argument(
        "--style",
        choices=("generator", "holdout"),
        default="generator",
        help="the training renderer's look, or the hold-out look",
    )
    args = parser.parse_args()
    draw = render_holdout if args.style == "holdout" else render_scene
    model_dir = args.model_dir or SHIPPED
    manifest = read_manifest(model_dir)
    detector = Detector(
        TorchBackend(model_dir / manifest.weights, args.device, half=False),
        manifest.classes,
        args.input_size or manifest.input_size,
        # The model's operating threshold, as the pipeline runs it.
        config=DetectorConfig(confidence=manifest.confidence),
    )
    roles = ClassMap()
    tallies = {"ground-truth boxes": AccuracyTally(), "detector boxes": AccuracyTally()}
    detection = DetectionTally()
    for index in range(args.scenes):
        scene = sample_scene(SEED_BASE + index, args.size)
        image, labels = draw(scene, args.size, perspective=args.perspective)
        found = detector.detect([np.asarray(image)])[0]
        sources = {
            "ground-truth boxes": [
                Detection(lb.class_name, roles.role(lb.class_name), 1.0, lb.box) for lb in labels
            ],
            "detector boxes": found,
        }
        detection.add(
            [(d.role, d.confidence, d.box) for d in found],
            [(roles.role(lb.class_name), lb.box) for lb in labels],
        )
        truth, truth_boxes = (
            scene.ground_truth(),
            [lb.box for lb in labels if lb.class_name == "mug"],
        )
        for name, detections in sources.items():
            tallies[name].add(analyze(detections, (args.size, args.size)), truth, truth_boxes)
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {args.scenes} scenes at {args.size} px, "
        f"perspective {args.perspective}, {args.style} style, model {manifest.ref} on {args.device}"
    )
    print(
        f"detector: mug recall {detection.recall('mug'):.1%}, coaster precision "
        f"{detection.precision('coaster'):.1%}, coaster recall {detection.recall('coaster'):.1%} "
        f"(IoU >= 0.5; {detection.labelled.get('mug', 0)} mugs, "
        f"{detection.labelled.get('coaster', 0)} coasters drawn)"
    )
    print(
        f"{'boxes':<20} {'mugs':>5} {'edge median cm':>15} {'edge p90 cm':>12} "
        f"{'on-coaster acc':>15} {'missed':>7}"
    )
    for name, tally in tallies.items():  # nan: no mug was found
        print(
            f"{name:<20} {tally.compared:>5} {tally.median_edge_error_cm:>15.3f} "
            f"{tally.p90_edge_error_cm:>12.3f} {tally.coaster_accuracy:>15.1%} {tally.missed:>7}"
        )


if __name__ == "__main__":
    main()
