"""Sources in real MongoDB with versions; each process's setup cache dropped through real Redis
pub/sub when another process writes."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.config import Settings
from core.sources import SourceSetup, SourceSetupError, SourceSpec
from infra import mongo, redis_client
from infra.sources_store import SourceCache, SourceNotFound, SourcesRepository


@pytest.fixture
async def repository(service_settings: Settings):
    client = mongo.create_client(service_settings)
    db = mongo.database(client, service_settings)
    await mongo.ensure_indexes(db)
    yield SourcesRepository(db)
    client.close()


async def _version_seen(cache: SourceCache, source_id: str, version: int | None) -> SourceSetup:
    """The cache's setup once it shows `version`, or after 5 s whatever it shows then."""
    deadline = time.monotonic() + 5
    while True:
        setup = await cache.setup(source_id)
        if setup.version == version or time.monotonic() > deadline:
            return setup
        await asyncio.sleep(0.05)


async def test_a_write_reaches_a_listening_cache_within_a_second(
    repository: SourcesRepository, service_settings: Settings, unique_name: str
) -> None:
    worker_redis = redis_client.create_client(service_settings)
    api_redis = redis_client.create_client(service_settings)
    worker = SourceCache(repository, worker_redis, unique_name)
    api = SourceCache(repository, api_redis, unique_name)
    ready = asyncio.Event()
    listening = asyncio.create_task(worker.listen(ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert (await worker.setup("till-1")).version is None, "unregistered: defaults"
        await repository.put("till-1", SourceSpec(model="mugdet-synth:1.0.0"), "ann")
        assert (await worker.setup("till-1")).version is None, "cached until announced"
        await api.publish_change("till-1")
        setup = await _version_seen(worker, "till-1", 1)
        assert (setup.version, setup.model) == (1, "mugdet-synth:1.0.0")
        await repository.delete("till-1", "ann")
        await api.publish_change("till-1")
        assert (await _version_seen(worker, "till-1", None)).version is None, "deleted: defaults"
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await worker_redis.aclose()
        await api_redis.aclose()


async def test_versions_history_and_refusals(repository: SourcesRepository) -> None:
    first = await repository.put("bar-2", SourceSpec(name="bar"), "ann")
    second = await repository.put("bar-2", SourceSpec(name="bar, left end"), "bob")
    assert (first.version, second.version) == (1, 2)
    assert (await repository.get("bar-2", 1)).spec.name == "bar"
    assert [s.created_by for s in await repository.history("bar-2")] == ["bob", "ann"]
    line = SourceSpec.model_validate(
        {
            "calibration": {
                "kind": "four_points",
                "image_points": [[0, 0], [1, 1], [2, 2], [3, 3]],
                "rectangle_cm": [10, 10],
            }
        }
    )
    with pytest.raises(SourceSetupError):
        await repository.put("bar-2", line, "ann")
    assert (await repository.get("bar-2")).version == 2, "nothing stored for a refusal"
    await repository.delete("bar-2", "ann")
    with pytest.raises(SourceNotFound):
        await repository.get("bar-2")
    assert "bar-2" not in {s.source_id for s in await repository.latest()}
