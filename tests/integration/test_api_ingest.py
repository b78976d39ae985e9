"""The lean upload path: small images travel inside the Kafka message, large ones by claim check;
an accepted upload reads as `pending` at once (from any API process) and its placeholder and
audit entry reach MongoDB in batches; results are read Redis first, MongoDB when Redis fails;
`mugpos api --workers 2` serves and flushes on SIGTERM."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import orjson
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from PIL import Image
from redis.asyncio import Redis

from control.console import mugpos_argv
from core.config import Settings, settings_env
from infra import mongo
from infra.clients import Clients
from infra.launchers import free_port
from infra.mongo import ACTIVITY_LOGS, ANALYSIS_RESULTS
from infra.result_store import ResultStore
from schemas.messages import IMAGE_REF_CONTENT_TYPE, AnalysisResult
from schemas.topics import INLINE_MAX_BYTES, TopicNames
from tests.integration.api_server import (
    PASSWORD,
    ApiServer,
    add_role_users,
    api_settings,
    login,
    start_api,
)
from tests.integration.workers import MAX_IMAGE_BYTES, scene_jpeg


def large_png(seed: int) -> bytes:
    """A 640 px scene as a noisy PNG: over the inline limit, under the workers' byte limit."""
    pixels = np.asarray(Image.open(io.BytesIO(scene_jpeg(seed, 640)))).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    assert INLINE_MAX_BYTES < len(data) < MAX_IMAGE_BYTES
    return data


def _post(url: str, headers: dict, name: str, data: bytes, kind: str, **params) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/analyze",
        headers=headers,
        params=params,
        data={"source_id": "desk-9"},
        files={"image": (name, data, kind)},
        timeout=120,
    )


async def _image_records(settings: Settings) -> dict[str, tuple[dict[str, bytes], bytes]]:
    """request id → (headers, value) of every message on the uploads topic (keyed by source)."""
    topic = TopicNames(settings.topic_prefix).uploads
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await consumer.end_offsets(parts)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found = {}
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    headers = dict(r.headers)
                    found[headers["request-id"].decode()] = (headers, r.value)
        return found
    finally:
        await consumer.stop()


async def _stored(settings: Settings, collection: str, query: dict) -> list[dict]:
    client = mongo.create_client(settings)
    try:
        return await mongo.database(client, settings)[collection].find(query).to_list(None)
    finally:
        client.close()


async def _eventually(read, check, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await read()
        if check(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


def test_small_uploads_travel_inline_large_ones_by_claim_check(api: ApiServer) -> None:
    headers = login(api, "analyst")
    small = scene_jpeg(31)
    big = large_png(32)
    inline = _post(api.url, headers, "small.jpg", small, "image/jpeg")
    claim = _post(api.url, headers, "big.png", big, "image/png")
    assert (inline.status_code, claim.status_code) == (202, 202), (inline.text, claim.text)
    inline_id, claim_id = inline.json()["request_id"], claim.json()["request_id"]
    assert inline.json()["object_key"] is None  # the worker keeps it
    key = claim.json()["object_key"]
    assert key.startswith("user-uploads/desk-9/")
    assert key.endswith(f"{claim_id}.png")

    # Pending at once, from the Redis marker (the MongoDB placeholder is written in batches).
    for request_id in (inline_id, claim_id):
        reply = httpx.get(f"{api.url}/api/v1/analyze/{request_id}", headers=headers)
        assert reply.status_code == 200
        assert reply.json() == {
            "request_id": request_id,
            "source_id": "desk-9",
            "status": "pending",
            "submitted_at": reply.json()["submitted_at"],
        }

    records = asyncio.run(_image_records(api.settings))
    assert set(records) == {inline_id, claim_id}
    inline_headers, inline_value = records[inline_id]
    assert inline_headers["content-type"] == b"image/jpeg"
    assert inline_value == small
    claim_headers, claim_value = records[claim_id]
    assert {r[0]["source-id"] for r in records.values()} == {b"desk-9"}
    assert claim_headers["content-type"] == IMAGE_REF_CONTENT_TYPE.encode()
    assert orjson.loads(claim_value)["image_ref"] == key

    async def kept() -> bytes:
        clients = Clients.open(api.settings)
        try:
            return (await clients.store.get(key)).data
        finally:
            await clients.close()

    assert asyncio.run(kept()) == big
    listed = httpx.get(
        f"{api.url}/api/v1/analyze", params={"status": "pending"}, headers=headers
    ).json()
    assert {item["request_id"] for item in listed["items"]} == {inline_id, claim_id}
    audit = asyncio.run(
        _eventually(
            lambda: _stored(api.settings, ACTIVITY_LOGS, {"action": "analysis.submit"}),
            lambda found: len(found) == 2,
        )
    )
    assert {(a["user_id"], a["resource"]) for a in audit} == {
        ("analyst", inline_id),
        ("analyst", claim_id),
    }


def test_inline_and_claim_check_uploads_become_results(pipeline: Settings) -> None:
    server = start_api(api_settings(pipeline))
    try:
        headers = login(server, "analyst")
        small, big = scene_jpeg(41), large_png(42)
        for name, data, kind in (("s.jpg", small, "image/jpeg"), ("b.png", big, "image/png")):
            reply = _post(server.url, headers, name, data, kind, wait=30_000)
            request_id = reply.json()["request_id"]
            result = AnalysisResult.model_validate(_finished(server, headers, request_id))
            assert result.status == "ok"
            assert result.image is not None
            assert result.image.object_key
            image = httpx.get(f"{server.url}/api/v1/analyze/{request_id}/image", headers=headers)
            assert image.content == data  # the original, kept by the worker or by the API
        stored = asyncio.run(_stored(server.settings, ANALYSIS_RESULTS, {}))
        assert sorted(doc["status"] for doc in stored) == ["ok", "ok"]  # placeholders replaced
    finally:
        server.stop()


def _finished(server: ApiServer, headers: dict, request_id: str, timeout_s: float = 120) -> dict:
    """The result, polled (the first image waits for the worker to load its model)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = httpx.get(f"{server.url}/api/v1/analyze/{request_id}", headers=headers).json()
        if found["status"] != "pending" or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_uploads_and_reads_carry_on_when_redis_is_unreachable(deployment: Settings) -> None:
    """Redis is a cache: no marker can be written or read, and the answers stay the same."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    server = start_api(api_settings(deployment, redis_url=nowhere))
    try:
        headers = login(server, "analyst")
        accepted = _post(server.url, headers, "s.jpg", scene_jpeg(51), "image/jpeg")
        assert accepted.status_code == 202, accepted.text
        request_id = accepted.json()["request_id"]
        for _ in range(2):  # from the buffered placeholder, then from MongoDB
            reply = httpx.get(f"{server.url}/api/v1/analyze/{request_id}", headers=headers)
            assert reply.status_code == 200
            assert reply.json()["status"] == "pending"
            time.sleep(0.5)
        unknown = httpx.get(f"{server.url}/api/v1/analyze/r-unknown", headers=headers)
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "unknown_request"
    finally:
        server.stop()


async def test_reads_fall_back_to_mongodb_when_redis_fails(deployment: Settings) -> None:
    clients = Clients.open(deployment)
    broken = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    outcomes: list[str] = []
    prefix, ttl = deployment.topic_prefix, deployment.result_cache_ttl_s
    writer = ResultStore(clients.db, clients.store, clients.redis, prefix, ttl)
    reader = ResultStore(
        clients.db, clients.store, broken, prefix, ttl, on_cache_lookup=outcomes.append
    )
    try:
        now = datetime.now(UTC)
        await writer.save(
            [AnalysisResult(request_id="rf-1", source_id="cam", status="ok", completed_at=now)]
        )
        assert (await reader.find("rf-1"))["status"] == "ok"  # from MongoDB, silently
        assert await reader.find("rf-unknown") is None
        assert outcomes == ["error", "error"]

        # Marking pending with Redis down raises nothing; the placeholder still lands.
        await reader.mark_pending("rf-2", "cam", now)
        assert (await reader.find("rf-2"))["status"] == "pending"  # not written yet: buffered
        await reader.close()
        stored = await writer.find_stored("rf-2")
        assert stored is not None
        assert stored["status"] == "pending"
        # The result replaces the placeholder; the cached copy is what readers see first.
        await writer.save(
            [AnalysisResult(request_id="rf-2", source_id="cam", status="ok", completed_at=now)]
        )
        assert (await writer.find("rf-2"))["status"] == "ok"
    finally:
        await broken.aclose()
        await writer.close()
        await clients.close()


async def test_a_late_placeholder_never_replaces_a_result(deployment: Settings) -> None:
    """A placeholder written after its result (a slow or retried batch) leaves it alone."""
    clients = Clients.open(deployment)
    store = ResultStore(
        clients.db, clients.store, None, deployment.topic_prefix, deployment.result_cache_ttl_s
    )
    try:
        now = datetime.now(UTC)
        await store.save(
            [AnalysisResult(request_id="late-1", source_id="cam", status="ok", completed_at=now)]
        )
        await store.mark_pending("late-1", "cam", now)
        await store.close()
        assert (await store.find("late-1"))["status"] == "ok"
    finally:
        await clients.close()


@pytest.fixture
def api_processes(api_deployment: Settings) -> Iterator[tuple[subprocess.Popen, str]]:
    """`mugpos api --workers 2` as a child process."""
    asyncio.run(add_role_users(api_deployment))
    port = free_port()
    env = {**os.environ, **settings_env(api_deployment), "MUGPOS_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        mugpos_argv("api", "--port", str(port), "--workers", "2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def test_api_with_two_worker_processes_serves_and_flushes_on_sigterm(
    api_processes: tuple[subprocess.Popen, str], api_deployment: Settings
) -> None:
    process, url = api_processes
    servers = [
        child
        for child in psutil.Process(process.pid).children()
        if "spawn_main" in " ".join(child.cmdline())
    ]
    assert len(servers) == 2
    token = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": "analyst", "password": PASSWORD}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    accepted = []
    for seed in range(12):  # a new connection each: the kernel spreads them over both processes
        reply = _post(url, headers, f"s{seed}.jpg", scene_jpeg(seed, 160), "image/jpeg")
        assert reply.status_code == 202, reply.text
        accepted.append(reply.json()["request_id"])
        again = httpx.get(f"{url}/api/v1/analyze/{accepted[-1]}", headers=headers)
        assert again.json()["status"] == "pending"  # whichever process answers
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    placeholders = asyncio.run(_stored(api_deployment, ANALYSIS_RESULTS, {"status": "pending"}))
    audit = asyncio.run(_stored(api_deployment, ACTIVITY_LOGS, {"action": "analysis.submit"}))
    assert sorted(d["request_id"] for d in placeholders) == sorted(accepted)
    assert sorted(a["resource"] for a in audit) == sorted(accepted)
