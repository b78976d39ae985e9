"""Dependencies down for a while mid-stream: nothing is lost, nothing is half-done.

Each test runs its own MongoDB, S3 or Redis server (the session's are shared by every other
test), stops it for 20 s while a real worker processes a stream of images, and restarts it on the
same port. Afterwards every request id has exactly one stored result, published unchanged, and
the worker reported itself `degraded` (naming the dependency) during the outage and `running`
after it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from infra.launchers import MotoS3Server, RedisServer, SecantusServer, free_port
from infra.object_store import S3ObjectStore
from infra.provision import provision
from infra.redis_client import create_client as redis_client
from infra.result_store import result_cache_key
from schemas.topics import TopicNames
from tests.conftest import settings_for
from tests.integration.kafka_io import (
    collect,
    comparable,
    eventually,
    publish,
    result_json_keys,
    results,
    stored_documents,
    worker_statuses,
)
from tests.integration.workers import WorkerProcess, scene_jpeg

IMAGES = 200
LATE = 10  # published once the dependency is back: some results certainly complete after it
DOWN_S = 20.0
# The 320 px detector: four times cheaper on CPU, so the stream is long enough to span the
# outage without making the test slow.
FAST = {"MUGPOS_MODEL": "mugdet-synth:1.0.0", "MUGPOS_HEARTBEAT_INTERVAL_S": "1"}


async def _state(settings: Settings, pid: int) -> dict:
    return (await worker_statuses(settings)).get(pid, {})


async def _through_outage(
    settings: Settings,
    folder: Path,
    dependency: str,
    stop: Callable[[], None],
    start: Callable[[], Awaitable[None] | None],
    *,
    degraded: bool = True,
    stage: str = "all",
) -> tuple[list[str], dict, datetime]:
    """Stream images, stop `dependency` once results flow, restart it after DOWN_S and publish
    LATE more (a fast worker may have finished the stream during the outage); returns the
    request ids, their published results and when the dependency came back."""
    await provision(settings)
    port = free_port()
    probes = f"http://127.0.0.1:{port}"
    worker = WorkerProcess(
        settings, folder, "w", {**FAST, "MUGPOS_WORKER_HTTP_PORT": str(port)}, stage=stage
    )
    names = TopicNames(settings.topic_prefix)
    ids = [f"{dependency}-{i:03d}" for i in range(IMAGES + LATE)]
    scenes = [scene_jpeg(i, 320) for i in range(20)]
    inputs = [(rid, scenes[i % 20], []) for i, rid in enumerate(ids)]
    loop = asyncio.get_running_loop()
    try:
        await publish(settings, inputs[:IMAGES])
        await collect(settings, names.results, ids, 180, any_of=True, to_end=False)
        assert await _probe(probes, "/readyz") == (200, "running")
        stop()
        down_at = loop.time()
        pid = worker.process.pid
        if degraded:
            status = await eventually(
                lambda: _degraded(settings, pid, dependency), DOWN_S, f"{dependency} reported down"
            )
            assert status["unavailable"][dependency] >= 0
            # The orchestrator sees the same: not ready (degraded), but alive.
            await eventually(
                lambda: _probe_says(probes, 503, "degraded", dependency), 10, "/readyz degraded"
            )
            assert (await _probe(probes, "/healthz"))[0] == 200
        await asyncio.sleep(max(0.0, DOWN_S - (loop.time() - down_at)))
        restarted = start()
        if restarted is not None:
            await restarted
        back_at = datetime.now(UTC)
        await publish(settings, inputs[IMAGES:])
        records = await collect(settings, names.results, ids, 240)
        await eventually(lambda: _running(settings, pid), 30, "the worker reports `running` again")
        assert await _probe(probes, "/readyz") == (200, "running")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{probes}/metrics")).text
        assert 'mugpos_inference_batch_size_count{model="mugdet-synth:1.0.0"}' in metrics
        assert worker.process.poll() is None, "the worker died during the outage"
    finally:
        worker.stop()
    return ids, results(records), back_at


async def _probe(base: str, path: str) -> tuple[int, str | None]:
    """The worker endpoint's status code and, for /readyz, the state it reports."""
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"{base}{path}")
    return reply.status_code, reply.json().get("state") if path == "/readyz" else None


async def _probe_says(base: str, status: int, state: str, dependency: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"{base}/readyz")
    body = reply.json()
    return (
        reply.status_code == status and body["state"] == state and dependency in body["unavailable"]
    )


async def _degraded(settings: Settings, pid: int, dependency: str) -> dict | None:
    status = await _state(settings, pid)
    ok = status.get("state") == "degraded" and dependency in status.get("unavailable", {})
    return status if ok else None


async def _running(settings: Settings, pid: int) -> bool:
    status = await _state(settings, pid)
    return status.get("state") == "running" and not status.get("unavailable")


async def _assert_settled_once(
    settings: Settings, ids: list[str], published: dict, complete_since: datetime | None = None
) -> None:
    """One document per request id, every published copy equal to it, and one result.json
    (for results completed after `complete_since`: an in-memory S3 forgets what it had)."""
    assert set(published) == set(ids)
    stored = await stored_documents(settings, ids)
    assert {rid: len(docs) for rid, docs in stored.items() if len(docs) != 1} == {}
    assert set(stored) == set(ids)
    for rid in ids:
        (doc,) = stored[rid]
        assert doc["status"] == "ok", (rid, doc.get("error"))
        for copy in published[rid]:
            assert comparable(copy) == comparable(doc), f"{rid}: published differs from stored"
    keys = await result_json_keys(settings)
    assert {rid: k for rid, k in keys.items() if len(k) > 1} == {}
    completed = {
        rid
        for rid in ids
        if complete_since is None
        or datetime.fromisoformat(stored[rid][0]["completed_at"]) > complete_since
    }
    assert completed, "nothing completed after the outage"
    assert sorted(rid for rid in completed if len(keys.get(rid, [])) != 1) == []


def _serve(server: SecantusServer | MotoS3Server | RedisServer) -> Iterator:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_mongo(tmp_path: Path) -> Iterator[SecantusServer]:
    yield from _serve(SecantusServer(tmp_path / "mongo", storage_path=str(tmp_path / "data")))


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[MotoS3Server]:
    yield from _serve(MotoS3Server(tmp_path / "s3"))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _serve(RedisServer(tmp_path / "redis"))


async def test_mongodb_down_for_20_s_loses_nothing(
    kafka_broker, own_mongo, redis_server, s3_server, unique_name, tmp_path
) -> None:
    settings = settings_for(unique_name, kafka_broker, own_mongo, redis_server, s3_server)
    ids, published, _ = await _through_outage(
        settings, tmp_path, "mongodb", own_mongo.stop, own_mongo.start
    )
    await _assert_settled_once(settings, ids, published)


async def test_object_store_down_for_20_s_loses_nothing(
    kafka_broker, mongo_server, redis_server, own_s3, unique_name, tmp_path
) -> None:
    settings = settings_for(unique_name, kafka_broker, mongo_server, redis_server, own_s3)

    async def restart() -> None:  # moto keeps buckets in memory: the operator recreates it
        own_s3.start()
        await _create_bucket(settings)

    ids, published, back_at = await _through_outage(
        settings, tmp_path, "object_store", own_s3.stop, restart
    )
    await _assert_settled_once(settings, ids, published, complete_since=back_at)


async def _create_bucket(settings: Settings) -> None:
    store = S3ObjectStore.from_settings(settings)
    try:
        await store.ensure_bucket()
    finally:
        await store.close()


async def test_redis_down_does_not_stop_results(
    kafka_broker, mongo_server, own_redis, s3_server, unique_name, tmp_path
) -> None:
    """Redis is a cache: results keep flowing while it is down, and are cached once it is back."""
    settings = settings_for(unique_name, kafka_broker, mongo_server, own_redis, s3_server)
    ids, published, back_at = await _through_outage(
        settings, tmp_path, "redis", own_redis.stop, own_redis.start, degraded=False
    )
    await _assert_settled_once(settings, ids, published)
    stored = await stored_documents(settings, ids)
    after = [rid for rid in ids if datetime.fromisoformat(stored[rid][0]["completed_at"]) > back_at]
    assert after, "nothing completed after Redis came back"
    redis = redis_client(settings)
    try:
        cached = [await redis.get(result_cache_key(settings.topic_prefix, rid)) for rid in after]
    finally:
        await redis.aclose()
    assert all(cached), "results completed after Redis came back are not cached"


async def test_a_worker_started_while_mongodb_is_down_waits_for_it(
    kafka_broker, own_mongo, redis_server, s3_server, unique_name, tmp_path
) -> None:
    settings = settings_for(unique_name, kafka_broker, own_mongo, redis_server, s3_server)
    await provision(settings)
    own_mongo.stop()
    worker = WorkerProcess(settings, tmp_path, "w", FAST)
    try:
        # Until it has found MongoDB refusing: a retry scheduled, or (without one) a give-up.
        await eventually(
            lambda: re.search(r"retry_scheduled|cannot start", worker.log_path.read_text()),
            90,
            "the worker tried MongoDB",
        )
        assert worker.process.poll() is None, "the worker gave up while MongoDB was down"
        own_mongo.start()
        ids = [f"late-{i}" for i in range(5)]
        await publish(settings, [(rid, scene_jpeg(i, 320), []) for i, rid in enumerate(ids)])
        published = results(
            await collect(settings, TopicNames(settings.topic_prefix).results, ids, 120)
        )
    finally:
        assert worker.stop() == 0
    assert {copy.status for rid in ids for copy in published[rid]} == {"ok"}
