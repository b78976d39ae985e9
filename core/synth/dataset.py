"""Write generated scenes to disk: images, YOLO labels and ground-truth JSON, one triple per scene."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from core.synth.render import render_scene
from core.synth.scene import CLASSES, sample_scene


def scene_seed(base_seed: int, index: int) -> int:
    """Seed of the index-th scene of a dataset; disjoint base seeds give disjoint datasets."""
    return base_seed * 1_000_003 + index


def write_dataset(
    out_dir: Path,
    count: int,
    size: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate `count` scenes under out_dir/{images,labels,truth}; returns a YOLO data.yaml."""
    for sub in ("images", "labels", "truth"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        scene = sample_scene(scene_seed(seed, index), size)
        image, labels = render_scene(scene, size)
        stem = f"scene_{seed}_{index:05d}"
        image.save(out_dir / "images" / f"{stem}.png")
        (out_dir / "labels" / f"{stem}.txt").write_text(
            "".join(label.yolo(size) + "\n" for label in labels)
        )
        truth = scene.ground_truth() | {
            "image": f"images/{stem}.png",
            "size_px": size,
            "boxes_px": [
                {"class": lb.class_name, "box": [round(v, 2) for v in lb.box]} for lb in labels
            ],
        }
        (out_dir / "truth" / f"{stem}.json").write_text(json.dumps(truth, indent=1))
        if progress:
            progress(index + 1)
    return write_data_yaml(out_dir, out_dir / "images", out_dir / "images")


def write_data_yaml(out_dir: Path, train: Path, val: Path) -> Path:
    """A YOLO dataset description naming our classes."""
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    path = out_dir / "data.yaml"
    path.write_text(
        f"path: {out_dir.resolve()}\ntrain: {train.resolve()}\nval: {val.resolve()}\n"
        f"names:\n{names}"
    )
    return path
