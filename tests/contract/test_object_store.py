"""One contract, run against both object stores: the local directory and S3 (moto over HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infra.object_store import (
    InvalidObjectKey,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        backend: ObjectStore = LocalObjectStore(tmp_path / "objects")
    else:
        settings = request.getfixturevalue("service_settings")
        backend = S3ObjectStore.from_settings(settings)
        await backend.ensure_bucket()
    yield backend
    await backend.close()


async def test_put_get_round_trip_keeps_bytes_type_and_metadata(store: ObjectStore) -> None:
    payload = bytes(range(256)) * 40
    put = await store.put(
        "user-uploads/cam/2026-01-02/r1.png",
        payload,
        content_type="image/png",
        metadata={"Request-Id": "r1", "source": "cam"},
    )
    assert put.size == len(payload)
    got = await store.get("user-uploads/cam/2026-01-02/r1.png")
    assert got.data == payload
    assert got.info.content_type == "image/png"
    assert got.info.metadata == {"request-id": "r1", "source": "cam"}
    assert got.info.etag == put.etag
    assert len(put.etag) == 32


async def test_head_matches_get_without_the_bytes(store: ObjectStore) -> None:
    await store.put("a/b.json", b'{"x": 1}', content_type="application/json", metadata={"k": "v"})
    head = await store.head("a/b.json")
    assert (head.size, head.content_type, head.metadata) == (8, "application/json", {"k": "v"})
    assert head.last_modified.tzinfo is not None


async def test_default_content_type(store: ObjectStore) -> None:
    await store.put("plain", b"x")
    assert (await store.head("plain")).content_type == "application/octet-stream"


async def test_overwrite_replaces_bytes_and_metadata(store: ObjectStore) -> None:
    await store.put("k", b"old", metadata={"v": "1"})
    await store.put("k", b"newer", metadata={"v": "2"})
    got = await store.get("k")
    assert (got.data, got.info.metadata) == (b"newer", {"v": "2"})


async def test_missing_objects_raise_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await store.get("nope/x")
    with pytest.raises(ObjectNotFound):
        await store.head("nope/x")


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put("d/x", b"1")
    await store.delete("d/x")
    await store.delete("d/x")
    with pytest.raises(ObjectNotFound):
        await store.head("d/x")


async def test_list_by_prefix_is_sorted_and_scoped(store: ObjectStore) -> None:
    for key in ["models/m/2/w.pt", "models/m/1/w.pt", "models/m/1/manifest.json", "models/n/1/w"]:
        await store.put(key, key.encode())
    listed = await store.list("models/m/")
    assert [info.key for info in listed] == [
        "models/m/1/manifest.json",
        "models/m/1/w.pt",
        "models/m/2/w.pt",
    ]
    assert [info.size for info in listed] == [len(info.key) for info in listed]
    assert await store.list("absent/") == []


async def test_concurrent_puts_all_land(store: ObjectStore) -> None:
    await asyncio.gather(*(store.put(f"many/{i:03d}", str(i).encode()) for i in range(20)))
    assert len(await store.list("many/")) == 20


async def test_invalid_keys_are_refused_before_any_io(store: ObjectStore) -> None:
    with pytest.raises(InvalidObjectKey):
        await store.put("../escape", b"x")
    with pytest.raises(InvalidObjectKey):
        await store.get("/abs")


async def test_health_reports_ok(store: ObjectStore) -> None:
    assert await store.health()
