"""What a model version is: the manifest stored beside its weights and checked on every load."""

from __future__ import annotations

import hashlib
from datetime import datetime
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from core.models.class_map import check_roles

MANIFEST_FILE = "manifest.json"
# The detectors shipped in the wheel (package data of `assets`); a regular package on disk.
BUNDLED_DIR = Path(str(resources.files("assets") / "models"))
# What a deployment serves unless told otherwise (MUGPOS_MODEL): one of the bundled versions.
DEFAULT_MODEL = "mugdet-synth:1.1.0"


class ModelManifest(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    task: str = "detect"
    architecture: str = "yolov8n"
    classes: list[str]
    input_size: int = Field(gt=0, multiple_of=32)
    class_map: dict[str, list[str]] | None = Field(
        None,
        description="role -> class names (core.models.class_map); null: the built-in map. "
        "MUGPOS_CLASS_MAP, when set, overrides it.",
    )
    confidence: float = Field(
        0.25, gt=0, lt=1, description="Operating confidence threshold chosen on validation data."
    )
    files: dict[str, str] = Field(description="file name -> sha256 of every file of the version")
    weights: str = Field(description="the file the detector loads")
    recipe: dict[str, object] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    created: datetime

    @field_validator("class_map")
    @classmethod
    def _known_roles(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        check_roles(value or {})
        return value

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelIntegrityError(RuntimeError):
    """A model file does not match the checksum its manifest records."""


class ModelNotFound(LookupError):
    """No source holds the requested model version."""


class ModelFiles:
    """A verified model version on local disk, and where it came from."""

    def __init__(self, path: Path, manifest: ModelManifest, source: str) -> None:
        self.path = path
        self.manifest = manifest
        self.source = source

    @property
    def weights(self) -> Path:
        return self.path / self.manifest.weights

    def __repr__(self) -> str:
        return f"ModelFiles({self.manifest.ref} from {self.source} at {self.path})"


def read_manifest(directory: Path) -> ModelManifest:
    return ModelManifest.model_validate_json((directory / MANIFEST_FILE).read_text())


def verify_files(directory: Path, manifest: ModelManifest) -> None:
    """Refuse a model whose files are missing or differ from the manifest's sha256."""
    if manifest.weights not in manifest.files:
        raise ModelIntegrityError(f"{manifest.ref}: manifest does not list its weights file")
    for name, expected in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise ModelIntegrityError(f"{manifest.ref}: file {name} is missing in {directory}")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"{manifest.ref}: checksum mismatch for {name}: manifest says {expected[:12]}…, "
                f"file has {actual[:12]}… — refusing to load it"
            )


def parse_ref(ref: str) -> tuple[str, str]:
    """`name:version` -> (name, version); `name` alone means `name:latest`."""
    name, _, version = ref.partition(":")
    if not name:
        raise ValueError(f"model reference {ref!r} must look like name:version")
    return name, version or "latest"


def bundled_dir(ref: str) -> Path:
    """Where a bundled version's files lie (benchmarks and checks that read them directly)."""
    return BUNDLED_DIR.joinpath(*parse_ref(ref))
