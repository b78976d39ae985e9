"""Positioning accuracy against generator ground truth, with ground-truth boxes and with the
shipped detector's boxes.

    python bench/positioning_accuracy.py [--scenes 120] [--perspective 0.0] [--style holdout]
        [--calibrate homography|table]

Scenes use seeds never used in training. Edge errors are compared for mugs within 30 cm of an edge
(the distances rules care about); a mug the detector misses is counted as missed, not as an error,
and a mug the tilt pushes out of the picture is not compared at all.
`--calibrate homography` gives each scene the calibration a person would make on an angled camera:
the table's four corners in the picture and its real width and depth (`Homography.from_rectangle`);
`table` also keeps those corners as the table top (`Calibration.table_cm`) instead of the detected
table box; without either (`none`) the scale is estimated from the coasters and mugs in each
picture.
`--style holdout` draws the same layouts in the look training never sees
(core.synth.holdout_style); the detector's mug recall and coaster precision and recall (IoU >= 0.5)
are reported for either style.
`--record` writes the figures into the model folder's manifest (`metrics`, keys prefixed with the
style, e.g. `holdout_style_coaster_precision`) together with the style's mAP50, measured by
ultralytics' validation on the same pictures written out as a YOLO dataset: every manifest then
says how its detector does on a look it never saw.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.models.backends import TorchBackend
from core.models.class_map import ClassMap
from core.models.detector import Detector, DetectorConfig
from core.models.manifest import DEFAULT_MODEL, MANIFEST_FILE, bundled_dir, read_manifest
from core.models.training import evaluate
from core.models.types import Detection
from core.positioning import Calibration, analyze
from core.positioning.perspective import Homography
from core.synth import sample_scene
from core.synth.accuracy import AccuracyTally, DetectionTally
from core.synth.camera import Shot
from core.synth.dataset import write_data_yaml
from core.synth.holdout_style import holdout_shot
from core.synth.render import render_shot
from core.synth.scene import Scene

SEED_BASE = 70_000
SHIPPED = bundled_dir(DEFAULT_MODEL)  # the default detector


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
    parser.add_argument(
        "--calibrate",
        choices=("none", "homography", "table"),
        default="none",
        help="calibrate each scene on its table's corners (homography), also keep them as the "
        "table top (table), or not at all",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the figures and the style's mAP50 into the model's manifest",
    )
    args = parser.parse_args()
    if args.record and (args.perspective or args.calibrate != "none"):
        parser.error("--record measures the manifest's figures: no --perspective or --calibrate")
    shoot = holdout_shot if args.style == "holdout" else render_shot
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
    # --record: the same pictures as a YOLO dataset, for the look's mAP50.
    pictures = Path(tempfile.mkdtemp(prefix="mugpos-accuracy-")) if args.record else None
    if pictures:
        (pictures / "images").mkdir()
        (pictures / "labels").mkdir()
    for index in range(args.scenes):
        scene = sample_scene(SEED_BASE + index, args.size)
        shot = shoot(scene, args.size, perspective=args.perspective)
        labels = shot.labels
        if pictures:
            shot.image.save(pictures / "images" / f"{index:05d}.png", compress_level=1)
            lines = "".join(label.yolo(args.size) + "\n" for label in labels)
            (pictures / "labels" / f"{index:05d}.txt").write_text(lines)
        found = detector.detect([np.asarray(shot.image)])[0]
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
        truth = scene.ground_truth()
        pictured = [
            (m, box) for m, box in zip(truth["mugs"], shot.mug_boxes(scene), strict=True) if box
        ]
        truth["mugs"] = [m for m, _ in pictured]
        truth_boxes = [box for _, box in pictured]
        calibration = (
            None if args.calibrate == "none" else calibrate(scene, shot, args.calibrate == "table")
        )
        for name, detections in sources.items():
            facts = analyze(detections, (args.size, args.size), calibration)
            tallies[name].add(facts, truth, truth_boxes)
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {args.scenes} scenes at {args.size} px, "
        f"perspective {args.perspective}, {args.style} style, calibration {args.calibrate}, "
        f"model {manifest.ref} on {args.device}"
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
    if pictures:
        data = write_data_yaml(pictures, pictures / "images", pictures / "images")
        size = args.input_size or manifest.input_size
        map50 = evaluate(model_dir / manifest.weights, data, size, args.device)["map50"]
        found = tallies["detector boxes"]
        figures = {
            "map50": map50,
            "mug_recall": detection.recall("mug"),
            "coaster_precision": detection.precision("coaster"),
            "coaster_recall": detection.recall("coaster"),
            "on_coaster_accuracy": found.coaster_accuracy,
            "edge_error_median_cm": found.median_edge_error_cm,
            "scenes": float(args.scenes),
        }
        prefix = f"{args.style}_style_"
        metrics = {k: v for k, v in manifest.metrics.items() if not k.startswith(prefix)}
        # A figure with nothing to count (no mug found: NaN) is left out, not written as null.
        metrics |= {
            prefix + key: round(value, 4) for key, value in figures.items() if math.isfinite(value)
        }
        recorded = manifest.model_copy(update={"metrics": metrics})
        (model_dir / MANIFEST_FILE).write_text(recorded.model_dump_json(indent=2) + "\n")
        print(f"mAP50 {map50:.3f}; recorded in {model_dir / MANIFEST_FILE}")
        shutil.rmtree(pictures)


def calibrate(scene: Scene, shot: Shot, table: bool) -> Calibration:
    """What a person would set up for this camera: the table's corners clicked in the picture,
    the table's width and depth measured, and with `table` those corners kept as the table top."""
    width, depth = scene.table.width, scene.table.height
    homography = Homography.from_rectangle(shot.table_corners(scene), width, depth)
    return Calibration(homography=homography, table_cm=(0.0, 0.0, width, depth) if table else None)


if __name__ == "__main__":
    main()
