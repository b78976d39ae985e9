"""Train the shipped detector, YOLOv8n from `yolov8n.yaml`, on generated scenes, fully offline."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.models.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from core.models.offline import prepare_offline
from core.synth.dataset import write_data_yaml, write_dataset
from core.synth.scene import CLASSES

HOLDOUT_SEED_OFFSET = 9_000  # the hold-out set never shares a seed with training data


@dataclass(frozen=True, slots=True)
class TrainRecipe:
    epochs: int = 40
    imgsz: int = 320
    seed: int = 1
    train_scenes: int = 300
    val_scenes: int = 60
    holdout_scenes: int = 100
    batch: int = 16
    name: str = "mugdet-synth"
    version: str = "1.0.0"
    init_weights: str | None = None  # continue from these weights instead of random init
    # Ultralytics' defaults, made for training from scratch. Its warm-up drives the biases at a
    # learning rate of 0.1 and a mosaic shows objects at other scales than the camera's; the third
    # CPU round (docs/PERFORMANCE.md) fine-tuned without either.
    warmup_epochs: float = 3.0
    mosaic: float = 1.0  # the share of training images made as a mosaic of four
    scale: float = 0.5  # random rescaling, +- this share
    time_hours: float | None = None  # a wall-clock budget: ultralytics fits the epochs into it
    varied: bool = False  # more looks per class (core.synth.variety) in every generated set


def _init_provenance(weights: Path) -> dict[str, object]:
    """Where continued training started: the weights' checksum and, when the weights came with a
    manifest, the recipe that produced them (so a multi-stage recipe stays fully recorded)."""
    provenance: dict[str, object] = {"init_sha256": sha256_file(weights)}
    manifest = weights.parent / MANIFEST_FILE
    if manifest.is_file():
        provenance["init_recipe"] = ModelManifest.model_validate_json(manifest.read_text()).recipe
    return provenance


MIN_MUG_RECALL = 0.97
THRESHOLDS = (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05)


def operating_point(weights: Path, dataset: Path, imgsz: int, device: str = "cpu") -> float:
    """The highest confidence threshold that still finds MIN_MUG_RECALL of the mugs (IoU >= 0.5)
    in a validation set: a mug standing on its coaster shares the coaster's box, so its mug score
    runs lower than the coaster's, and the product must not lose mugs."""
    import json

    import numpy as np
    from PIL import Image

    from core.models.backends import TorchBackend
    from core.models.detector import Detector, DetectorConfig
    from core.positioning.geometry import iou

    backend = TorchBackend(weights, device, half=False)
    detector = Detector(backend, backend.class_names, imgsz, config=DetectorConfig(confidence=0.01))
    scores: list[float] = []  # per ground-truth mug: the best score of a matching mug detection
    for truth_file in sorted((dataset / "truth").glob("*.json")):
        truth = json.loads(truth_file.read_text())
        image = np.asarray(Image.open(dataset / truth["image"]).convert("RGB"))
        found = [d for d in detector.detect([image])[0] if d.role == "mug"]
        for box in (b["box"] for b in truth["boxes_px"] if b["class"] == "mug"):
            matches = [d.confidence for d in found if iou(tuple(box), d.box) >= 0.5]
            scores.append(max(matches, default=0.0))
    for threshold in THRESHOLDS:
        if scores and sum(s >= threshold for s in scores) / len(scores) >= MIN_MUG_RECALL:
            return threshold
    return THRESHOLDS[-1]


def evaluate(weights: Path, data_yaml: Path, imgsz: int, device: str = "cpu") -> dict[str, float]:
    """mAP50 and mAP50-95 of a weights file on a dataset (ultralytics validation, offline)."""
    prepare_offline()
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(
        data=str(data_yaml),
        imgsz=imgsz,
        batch=16,
        device=device,
        plots=False,
        verbose=False,
        workers=0,
        # Beside the dataset, not in ultralytics' default ./runs of whatever the cwd is.
        project=str(data_yaml.parent.resolve() / "runs"),
        name="val",
        exist_ok=True,
    )
    return {
        "map50": round(float(metrics.box.map50), 4),
        "map50_95": round(float(metrics.box.map), 4),
    }


@dataclass(frozen=True, slots=True)
class Hardware:
    """Where training runs; not part of the recipe, since it does not change what is learnt
    beyond run-to-run noise (CPU runs are deterministic, GPU runs are not)."""

    device: str = "cpu"
    workers: int = 2  # data-loading and scene-generating processes

    @property
    def gpu(self) -> bool:
        return self.device.startswith("cuda")


def generate_holdout(
    work: Path, recipe: TrainRecipe, count: int | None = None, workers: int = 1
) -> Path:
    """A freshly generated hold-out set (seeds disjoint from training); returns its data.yaml."""
    holdout = work / "holdout"
    write_dataset(
        holdout,
        count or recipe.holdout_scenes,
        recipe.imgsz,
        recipe.seed + HOLDOUT_SEED_OFFSET,
        workers=workers,
        varied=recipe.varied,
    )
    return holdout / "data.yaml"


def train(
    recipe: TrainRecipe,
    work: Path,
    out_dir: Path,
    log: Callable[[str], None] = print,
    hardware: Hardware = Hardware(),
) -> ModelManifest:
    """Generate data, train, evaluate on a hold-out set and write weights + manifest to out_dir."""
    prepare_offline()
    from ultralytics import YOLO

    # Absolute paths: ultralytics puts a relative project under its own runs folder, and reads a
    # weights path it cannot find as an asset name to download.
    work, out_dir = work.resolve(), out_dir.resolve()
    log(f"generating {recipe.train_scenes} training and {recipe.val_scenes} validation scenes")
    for part, count, seed in (
        ("train", recipe.train_scenes, recipe.seed),
        ("val", recipe.val_scenes, recipe.seed + 1),
    ):
        write_dataset(
            work / part, count, recipe.imgsz, seed, workers=hardware.workers, varied=recipe.varied
        )
    data = write_data_yaml(work, work / "train" / "images", work / "val" / "images")

    start = recipe.init_weights or "yolov8n.yaml"
    budget = f" or {recipe.time_hours * 60:.1f} minutes" if recipe.time_hours else ""
    log(
        f"training yolov8n from {start} for {recipe.epochs} epochs{budget} at {recipe.imgsz} px"
        f" on {hardware.device}"
    )
    model = YOLO(start)
    model.train(
        data=str(data),
        epochs=recipe.epochs,
        imgsz=recipe.imgsz,
        batch=recipe.batch,
        seed=recipe.seed,
        deterministic=not hardware.gpu,
        device=hardware.device,
        workers=hardware.workers,
        # Decoded images kept in memory: a GPU waits on PNG decoding otherwise.
        cache="ram" if hardware.gpu else False,
        time=recipe.time_hours,
        project=str(work / "runs"),
        name="train",
        exist_ok=True,
        plots=False,
        amp=False,  # ultralytics' AMP check downloads a model, which cannot work offline
        verbose=False,
        fliplr=0.5,
        flipud=0.5,
        mosaic=recipe.mosaic,
        scale=recipe.scale,
        warmup_epochs=recipe.warmup_epochs,
    )
    best = work / "runs" / "train" / "weights" / "best.pt"
    return finalize(recipe, best, work, out_dir, log, hardware)


def finalize(
    recipe: TrainRecipe,
    best: Path,
    work: Path,
    out_dir: Path,
    log: Callable[[str], None] = print,
    hardware: Hardware = Hardware(),
) -> ModelManifest:
    """Evaluate trained weights on a fresh hold-out set; write them with their manifest."""
    work, out_dir = work.resolve(), out_dir.resolve()
    log("evaluating on a freshly generated hold-out set")
    holdout = generate_holdout(work, recipe, workers=hardware.workers)
    metrics = evaluate(best, holdout, recipe.imgsz, hardware.device)
    log(f"hold-out mAP50 {metrics['map50']:.3f}, mAP50-95 {metrics['map50_95']:.3f}")

    confidence = operating_point(best, work / "val", recipe.imgsz, hardware.device)
    log(f"operating confidence threshold (val mug recall >= {MIN_MUG_RECALL}): {confidence}")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "model.pt"
    shutil.copyfile(best, weights)
    manifest = ModelManifest(
        name=recipe.name,
        version=recipe.version,
        classes=list(CLASSES),
        input_size=recipe.imgsz,
        confidence=confidence,
        files={weights.name: sha256_file(weights)},
        weights=weights.name,
        recipe={key: getattr(recipe, key) for key in recipe.__dataclass_fields__}
        | {
            "base": "yolov8n.yaml (random init)" if not recipe.init_weights else "init_weights",
            "data": "core.synth generated scenes",
            "trained_on": hardware.device,
        }
        | (_init_provenance(Path(recipe.init_weights)) if recipe.init_weights else {}),
        metrics={f"holdout_{key}": value for key, value in metrics.items()}
        | {"holdout_scenes": float(recipe.holdout_scenes)},
        created=datetime.now(UTC),
    )
    (out_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return manifest
