"""Model store: MUGPOS_MODEL_DIR, the object store (real moto S3), the bundle; integrity checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.models.manifest import ModelIntegrityError, ModelNotFound
from infra.model_store import ModelStore
from infra.object_store import S3ObjectStore
from tests.model_fixtures import DEFAULT_MODEL, copy_version, shipped_manifest


@pytest.fixture
async def s3(service_settings: Settings):
    store = S3ObjectStore.from_settings(service_settings)
    await store.ensure_bucket()
    yield store
    await store.close()


async def test_bundled_default_resolves_and_verifies(tmp_path: Path) -> None:
    files = await ModelStore(tmp_path / "cache").resolve(DEFAULT_MODEL)
    assert files.source == "bundled"
    assert files.manifest == shipped_manifest()
    assert files.weights.is_file()


async def test_model_dir_wins_over_the_bundle(tmp_path: Path) -> None:
    copy_version(tmp_path / "models", "1.0.0")
    store = ModelStore(tmp_path / "cache", model_dir=tmp_path / "models")
    files = await store.resolve("mugdet-synth:1.0.0")
    assert (files.source, files.path) == (
        "model_dir",
        tmp_path / "models" / "mugdet-synth" / "1.0.0",
    )


async def test_push_then_pull_through_s3_and_cache_is_reused(tmp_path: Path, s3) -> None:
    source = copy_version(tmp_path / "local", "2.0.0")
    await ModelStore(tmp_path / "unused", object_store=s3).push(source)
    keys = [info.key for info in await s3.list("models/mugdet-synth/2.0.0/")]
    assert keys == ["models/mugdet-synth/2.0.0/manifest.json", "models/mugdet-synth/2.0.0/model.pt"]

    store = ModelStore(tmp_path / "cache", object_store=s3)
    first = await store.resolve("mugdet-synth:2.0.0")
    assert first.source == "object_store"
    assert first.path == tmp_path / "cache" / "mugdet-synth" / "2.0.0"
    # With the objects gone, the verified cache still serves the version: no second download.
    for key in keys:
        await s3.delete(key)
    again = await store.resolve("mugdet-synth:2.0.0")
    assert again.source == "object_store (cached)"
    assert again.manifest == first.manifest


async def test_checksum_mismatch_in_the_store_is_refused(tmp_path: Path, s3) -> None:
    source = copy_version(tmp_path / "local", "3.0.0")
    await ModelStore(tmp_path / "unused", object_store=s3).push(source)
    await s3.put("models/mugdet-synth/3.0.0/model.pt", b"not the weights you signed")
    store = ModelStore(tmp_path / "cache", object_store=s3)
    with pytest.raises(ModelIntegrityError, match=r"checksum mismatch for model\.pt"):
        await store.resolve("mugdet-synth:3.0.0")
    assert not (tmp_path / "cache" / "mugdet-synth" / "3.0.0").exists()


async def test_tampered_local_file_is_refused(tmp_path: Path) -> None:
    directory = copy_version(tmp_path / "models", "1.0.0")
    with (directory / "model.pt").open("ab") as handle:
        handle.write(b"\0")
    store = ModelStore(tmp_path / "cache", model_dir=tmp_path / "models")
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        await store.resolve("mugdet-synth:1.0.0")


async def test_push_refuses_a_model_that_does_not_verify(tmp_path: Path, s3) -> None:
    directory = copy_version(tmp_path / "local", "4.0.0")
    (directory / "model.pt").write_bytes(b"truncated")
    with pytest.raises(ModelIntegrityError):
        await ModelStore(tmp_path / "cache", object_store=s3).push(directory)
    assert await s3.list("models/mugdet-synth/4.0.0/") == []


async def test_list_and_latest_across_sources(tmp_path: Path, s3) -> None:
    copy_version(tmp_path / "models", "1.5.0")
    await ModelStore(tmp_path / "x", object_store=s3).push(copy_version(tmp_path / "l", "10.0.0"))
    store = ModelStore(tmp_path / "cache", model_dir=tmp_path / "models", object_store=s3)
    listed = await store.list()
    assert ("mugdet-synth:1.5.0", "model_dir") in listed
    assert ("mugdet-synth:10.0.0", "object_store") in listed
    assert ("mugdet-synth:1.0.0", "bundled") in listed
    latest = await store.resolve("mugdet-synth:latest")
    assert latest.manifest.version == "10.0.0"  # version order, not string order


async def test_unknown_model_says_where_it_looked(tmp_path: Path, s3) -> None:
    with pytest.raises(ModelNotFound, match="MUGPOS_MODEL_DIR, the object store or the bundle"):
        await ModelStore(tmp_path / "cache", object_store=s3).resolve("mugdet-synth:9.9.9")
