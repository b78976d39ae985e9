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
