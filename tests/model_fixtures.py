"""Model versions for tests, made from the shipped detector (the only weights that exist here)."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.config import Settings
from core.models.manifest import MANIFEST_FILE, ModelManifest, read_manifest
from infra.model_store import BUNDLED_DIR

DEFAULT_MODEL = Settings.model_fields["model"].default  # what a deployment serves unless told
SHIPPED = BUNDLED_DIR.joinpath(*DEFAULT_MODEL.split(":"))


def shipped_manifest() -> ModelManifest:
    return read_manifest(SHIPPED)


def copy_version(root: Path, version: str, name: str = "mugdet-synth") -> Path:
    """The shipped weights as `name:version` under root/name/version (manifest rewritten)."""
    target = root / name / version
    target.mkdir(parents=True, exist_ok=True)
    manifest = shipped_manifest()
    for filename in manifest.files:
        shutil.copyfile(SHIPPED / filename, target / filename)
    updated = manifest.model_copy(update={"name": name, "version": version})
    (target / MANIFEST_FILE).write_text(updated.model_dump_json(indent=2))
    return target


# The shipped detector's classes under COCO's names; COCO has no coaster, so its coaster class
# becomes a COCO class no role maps to, as with a real COCO model.
COCO_NAMES = {"mug": "cup", "coaster": "frisbee", "table": "dining table"}


def coco_style_weights(out: Path) -> Path:
    """The shipped weights with COCO-style class names: what `yolov8n.pt` looks like to
    `mugpos models import` (names inside the checkpoint, no manifest), with detections that
    mean something on generated scenes."""
    import torch

    checkpoint = torch.load(SHIPPED / "model.pt", map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        module = checkpoint.get(key)
        if module is not None:
            module.names = {i: COCO_NAMES.get(n, n) for i, n in module.names.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return out
