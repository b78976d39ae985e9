"""Positioning accuracy against generator ground truth, with ground-truth boxes and with the
shipped detector's boxes.

    python bench/positioning_accuracy.py [--scenes 120] [--perspective 0.0]

Scenes use seeds never used in training. Edge errors are compared for mugs within 30 cm of an edge
(the distances rules care about); a mug the detector misses is counted as missed, not as an error.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.models.backends import TorchBackend
from core.models.class_map import ClassMap
from core.models.detector import Detector, DetectorConfig
from core.models.manifest import read_manifest
from core.models.types import Detection
from core.positioning import analyze
from core.positioning.geometry import centre
from core.synth import render_scene, sample_scene

SEED_BASE = 70_000
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models" / "mugdet-synth" / "1.0.0"


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
    args = parser.parse_args()
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
    rows = {"ground-truth boxes": ([], [0, 0]), "detector boxes": ([], [0, 0])}
    missed = 0
    for index in range(args.scenes):
        scene = sample_scene(SEED_BASE + index, args.size)
        image, labels = render_scene(scene, args.size, perspective=args.perspective)
        truth = scene.ground_truth()
        truth_boxes = [lb.box for lb in labels if lb.class_name == "mug"]
        sources = {
            "ground-truth boxes": [
                Detection(lb.class_name, roles.role(lb.class_name), 1.0, lb.box) for lb in labels
            ],
            "detector boxes": detector.detect([np.asarray(image)])[0],
        }
        for name, detections in sources.items():
            facts = analyze(detections, (args.size, args.size))
            errors, coaster = rows[name]
            for expected, box in zip(truth["mugs"], truth_boxes, strict=True):
                found = min(
                    facts.mugs,
                    default=None,
                    key=lambda m: np.hypot(*np.subtract(centre(m.box), centre(box))),
                )
                if found is None or np.hypot(*np.subtract(centre(found.box), centre(box))) > 10:
                    missed += name == "detector boxes"
                    continue
                coaster[0] += found.on_coaster == expected["on_coaster"]
                coaster[1] += 1
                if found.edge_distance_cm is not None and expected["edge_distance_cm"] < 30:
                    errors.append(abs(found.edge_distance_cm - expected["edge_distance_cm"]))
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {args.scenes} scenes at {args.size} px, "
        f"perspective {args.perspective}, model {manifest.ref}"
    )
    print(
        f"{'boxes':<20} {'mugs':>5} {'edge median cm':>15} {'edge p90 cm':>12} {'on-coaster acc':>15}"
    )
    for name, (errors, (right, total)) in rows.items():
        median = statistics.median(errors) if errors else float("nan")  # nan: no mug was found
        p90 = sorted(errors)[int(0.9 * len(errors))] if errors else float("nan")
        accuracy = right / total if total else float("nan")
        print(f"{name:<20} {total:>5} {median:>15.3f} {p90:>12.3f} {accuracy:>15.1%}")
    print(f"mugs missed by the detector: {missed}")


if __name__ == "__main__":
    main()
