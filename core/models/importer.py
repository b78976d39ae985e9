"""Bring your own detector: turn YOLO weights trained elsewhere (COCO `yolov8n.pt`, a model
fine-tuned on your tables) into a model version this system serves.

The classes, task and training size are read from the weights themselves, so a manifest cannot
disagree with what the model was trained on; a class-map preset says which class plays which role.
"""

from __future__ import annotations

import io
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from core.models.class_map import PRESETS, ClassMap
from core.models.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from core.models.offline import prepare_offline

Preset = Literal["auto", "coco", "mugpos", "builtin"]
WEIGHTS_FILE = "model.pt"


class ImportRefused(ValueError):
    """The weights cannot serve as a mug detector; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class WeightsInfo:
    classes: list[str]
    train_size: int | None  # the imgsz it was trained at, when the checkpoint records it
    architecture: str


@dataclass(frozen=True, slots=True)
class SmokeReport:
    """One detection on a generated scene: proof the version loads and runs, not of accuracy."""

    seconds: float
    detections: int
    roles: dict[str, int]


def read_weights(weights: Path) -> WeightsInfo:
    """Classes, training size and architecture of an ultralytics detection checkpoint."""
    prepare_offline()
    from ultralytics import YOLO

    try:
        model = YOLO(str(weights))
    except Exception as exc:  # ultralytics raises many kinds for a file that is not a checkpoint
        raise ImportRefused(
            f"{weights.name} is not a YOLO checkpoint ultralytics can load"
        ) from exc
    if model.task != "detect":
        raise ImportRefused(
            f"{weights.name} is a {model.task!r} model; a detection model is needed"
        )
    names = model.model.names  # type: ignore[union-attr]
    train_args = (getattr(model, "ckpt", None) or {}).get("train_args") or {}
    size = train_args.get("imgsz")
    yaml_file = Path(str(model.model.yaml.get("yaml_file", "") or "yolo"))  # type: ignore[union-attr]
    return WeightsInfo(
        classes=[names[i] for i in sorted(names)],
        train_size=size if isinstance(size, int) else None,
        architecture=yaml_file.stem or "yolo",
    )


def choose_class_map(classes: list[str], preset: Preset) -> tuple[str, dict[str, list[str]] | None]:
    """(preset used, the manifest's class map). `auto`: `mugpos` when the model has a class named
    after every role it could see, `coco` when it has COCO's cup, else the built-in map (None)."""
    lowered = {name.lower() for name in classes}
    if preset == "auto":
        if "mug" in lowered:
            preset = "mugpos"
        elif "cup" in lowered:
            preset = "coco"
        else:
            preset = "builtin"
    chosen = None if preset == "builtin" else PRESETS[preset]
    if "mug" not in ClassMap(chosen).roles_seen(classes):
        raise ImportRefused(
            f"with the {preset!r} class map none of the model's classes is a mug "
            f"(classes: {', '.join(classes[:12])}{'…' if len(classes) > 12 else ''}); "
            "choose another --class-map or set MUGPOS_CLASS_MAP"
        )
    return preset, chosen


def import_weights(
    weights: Path,
    out_dir: Path,
    *,
    name: str,
    version: str,
    input_size: int | None = None,
    preset: Preset = "auto",
) -> ModelManifest:
    """Copy the weights into `out_dir` beside a manifest (sha256, classes, input size, class map);
    refuses an existing version rather than replacing what a worker may be serving."""
    info = read_weights(weights)
    size = input_size or info.train_size or 640
    if size % 32:
        raise ImportRefused(f"input size {size} is not a multiple of 32")
    used, class_map = choose_class_map(info.classes, preset)
    if (out_dir / MANIFEST_FILE).exists():
        raise ImportRefused(f"{out_dir} already holds a model version; choose another --version")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / WEIGHTS_FILE
    shutil.copyfile(weights, target)
    manifest = ModelManifest(
        name=name,
        version=version,
        architecture=info.architecture,
        classes=info.classes,
        input_size=size,
        class_map=class_map,
        files={WEIGHTS_FILE: sha256_file(target)},
        weights=WEIGHTS_FILE,
        recipe={"imported_from": weights.name, "class_map_preset": used},
        created=datetime.now(UTC),
    )
    (out_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return manifest


def smoke_detect(directory: Path, manifest: ModelManifest) -> SmokeReport:
    """Load the version as a worker would (torch on CPU) and detect on one generated scene."""
    from PIL import Image

    from core.models.backends import TorchBackend
    from core.models.detector import Detector, DetectorConfig
    from core.synth.render import scene_jpegs

    backend = TorchBackend(directory / manifest.weights, "cpu")
    detector = Detector(
        backend,
        manifest.classes,
        manifest.input_size,
        ClassMap(manifest.class_map),
        DetectorConfig(confidence=manifest.confidence),
    )
    scene = scene_jpegs(1, 1, manifest.input_size)[0]
    pixels = np.asarray(Image.open(io.BytesIO(scene)).convert("RGB"))
    started = time.perf_counter()
    (found,) = detector.detect([pixels])
    seconds = time.perf_counter() - started
    return SmokeReport(round(seconds, 3), len(found), dict(Counter(d.role for d in found)))
