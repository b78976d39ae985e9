"""Write generated scenes to disk: images, YOLO labels and ground-truth JSON, one triple per scene."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from core.synth.render import render_scene
from core.synth.scene import CLASSES, COASTER_CM, VARIED_COASTER_CM, sample_scene

# PNG level 1: a third bigger than the default level 6 but five times faster to write, which
# makes writing, not rendering, no longer the slow half of generating a scene.
PNG_COMPRESS_LEVEL = 1


def scene_seed(base_seed: int, index: int) -> int:
    """Seed of the index-th scene of a dataset; disjoint base seeds give disjoint datasets."""
    return base_seed * 1_000_003 + index


def write_scene(out_dir: Path, size: int, seed: int, varied: bool, index: int) -> None:
    """Render the index-th scene of a dataset and write its image, labels and ground truth."""
    coaster_cm = VARIED_COASTER_CM if varied else COASTER_CM
    scene = sample_scene(scene_seed(seed, index), size, coaster_cm)
    image, labels = render_scene(scene, size, varied=varied)
    stem = f"scene_{seed}_{index:05d}"
    image.save(out_dir / "images" / f"{stem}.png", compress_level=PNG_COMPRESS_LEVEL)
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


def write_dataset(
    out_dir: Path,
    count: int,
    size: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    varied: bool = False,
) -> Path:
    """Generate `count` scenes under out_dir/{images,labels,truth}; returns a YOLO data.yaml.
    `varied`: with core.synth.variety's looks and coasters of every common size.

    Every scene depends only on (seed, index), so `workers` processes give the same files as one.
    """
    for sub in ("images", "labels", "truth"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    write = partial(write_scene, out_dir, size, seed, varied)
    if workers <= 1:
        done = map(write, range(count))
    else:
        pool = ProcessPoolExecutor(workers)
        done = pool.map(write, range(count), chunksize=max(1, count // (workers * 8)))
    try:
        for finished, _ in enumerate(done, start=1):
            if progress:
                progress(finished)
    finally:
        if workers > 1:
            pool.shutdown()
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
