"""Find model versions: MUGPOS_MODEL_DIR first, then the object store, then the bundled default.

Versions fetched from the object store are downloaded once into a local cache, checked against the
sha256 sums of their manifest, and refused on any mismatch. A version in the cache is verified and
reused without touching the network.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

from core.config import Settings
from core.models.class_map import ClassMap
from core.models.manager import ModelManager
from core.models.manifest import (
    BUNDLED_DIR,
    MANIFEST_FILE,
    ModelFiles,
    ModelIntegrityError,
    ModelManifest,
    ModelNotFound,
    parse_ref,
    read_manifest,
    verify_files,
)
from infra.object_store import ObjectNotFound, ObjectStore
from infra.object_store.keys import model_key, model_prefix


def _version_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


class ModelStore:
    def __init__(
        self,
        cache_dir: Path,
        *,
        model_dir: Path | None = None,
        object_store: ObjectStore | None = None,
        bundled_dir: Path = BUNDLED_DIR,
    ) -> None:
        self.cache_dir = cache_dir
        self.model_dir = model_dir
        self.object_store = object_store
        self.bundled_dir = bundled_dir

    async def list(self) -> list[tuple[str, str]]:
        """(ref, source) of every version each source holds, in search order."""
        found = [(ref, "model_dir") for ref in _local_refs(self.model_dir)]
        if self.object_store is not None:
            refs = {
                "{}:{}".format(*info.key.split("/")[1:3])
                for info in await self.object_store.list("models/")
                if info.key.endswith(f"/{MANIFEST_FILE}") and info.key.count("/") == 3
            }
            found += [(ref, "object_store") for ref in sorted(refs)]
        found += [(ref, "bundled") for ref in _local_refs(self.bundled_dir)]
        return found

    async def _latest(self, name: str) -> str:
        versions = [
            ref.split(":", 1)[1] for ref, _ in await self.list() if ref.split(":", 1)[0] == name
        ]
        if not versions:
            raise ModelNotFound(f"no version of model {name!r} in any source")
        return max(versions, key=_version_key)

    async def resolve(self, ref: str) -> ModelFiles:
        """The first source holding `name:version`, verified; `latest` picks the highest version."""
        name, version = parse_ref(ref)
        if version == "latest":
            version = await self._latest(name)
        if self.model_dir is not None:
            directory = self.model_dir / name / version
            if (directory / MANIFEST_FILE).is_file():
                return _verified(directory, "model_dir")
        if self.object_store is not None:
            pulled = await self._pull(name, version)
            if pulled is not None:
                return pulled
        directory = self.bundled_dir / name / version
        if (directory / MANIFEST_FILE).is_file():
            return _verified(directory, "bundled")
        raise ModelNotFound(
            f"model {name}:{version} is not in MUGPOS_MODEL_DIR, the object store or the bundle; "
            "`mugpos models list` shows what exists"
        )

    async def _pull(self, name: str, version: str) -> ModelFiles | None:
        assert self.object_store is not None
        cached = self.cache_dir / name / version
        if (cached / MANIFEST_FILE).is_file():
            try:
                return _verified(cached, "object_store (cached)")
            except ModelIntegrityError:
                shutil.rmtree(cached)  # a damaged cache is fetched again, never used
        try:
            raw = await self.object_store.get(model_key(name, version, MANIFEST_FILE))
        except ObjectNotFound:
            return None
        manifest = ModelManifest.model_validate_json(raw.data)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".pull-"))
        try:
            for filename in manifest.files:
                obj = await self.object_store.get(model_key(name, version, filename))
                await asyncio.to_thread((staging / filename).write_bytes, obj.data)
            await asyncio.to_thread((staging / MANIFEST_FILE).write_bytes, raw.data)
            await asyncio.to_thread(_install, staging, manifest, cached)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return ModelFiles(cached, manifest, "object_store")

    async def push(self, directory: Path) -> ModelManifest:
        """Upload a verified local model version (its files, then its manifest) to the store."""
        if self.object_store is None:
            raise RuntimeError("no object store configured to push to")
        manifest = read_manifest(directory)
        verify_files(directory, manifest)
        for filename in manifest.files:
            await self.object_store.put(
                model_key(manifest.name, manifest.version, filename),
                (directory / filename).read_bytes(),
                metadata={"sha256": manifest.files[filename]},
            )
        # The manifest goes last: a reader that sees it can rely on every file being there.
        await self.object_store.put(
            model_prefix(manifest.name, manifest.version) + MANIFEST_FILE,
            (directory / MANIFEST_FILE).read_bytes(),
            content_type="application/json",
        )
        return manifest


def _local_refs(root: Path | None) -> list[str]:
    if root is None or not root.is_dir():
        return []
    return sorted(
        f"{m.parent.parent.name}:{m.parent.name}" for m in root.glob(f"*/*/{MANIFEST_FILE}")
    )


def _install(staging: Path, manifest: ModelManifest, target: Path) -> None:
    """Verify downloaded files, then move them into the cache in one rename."""
    verify_files(staging, manifest)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.replace(target)


def _verified(directory: Path, source: str) -> ModelFiles:
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    return ModelFiles(directory, manifest, source)


def model_store_from_settings(settings: Settings, object_store: ObjectStore | None) -> ModelStore:
    return ModelStore(
        settings.model_cache_dir, model_dir=settings.model_dir, object_store=object_store
    )


def model_manager_from_settings(settings: Settings, store: ModelStore) -> ModelManager:
    """The manager a worker serves with: device, backend, budget and class map from settings."""
    return ModelManager(
        store.resolve,
        device=settings.device,
        backend=settings.detector_backend,
        cpu_budget_bytes=settings.model_memory_budget_mb << 20,
        export_dir=settings.model_cache_dir / "onnx",
        class_map=ClassMap(settings.class_map) if settings.class_map is not None else None,
        confidence=settings.confidence_threshold,
        engine_dir=engine_dir(settings),
        engine_batch=settings.max_batch,
    )


def engine_dir(settings: Settings) -> Path:
    """Where `mugpos models build-engine` puts TensorRT engines and workers look for them."""
    return settings.model_cache_dir / "engines"
