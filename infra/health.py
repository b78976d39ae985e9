"""Readiness of every external dependency, checked concurrently with a timeout each (for /ready)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.config import Settings
from infra import mongo, redis_client
from infra.kafka_admin import KafkaAdmin
from infra.kafka_security import verify_kafka_access
from infra.object_store import create_object_store


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    ok: bool
    detail: str
    latency_ms: float


async def _timed(
    name: str, check: Callable[[], Awaitable[str]], timeout_s: float
) -> ComponentHealth:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout_s)
        ok = True
    except TimeoutError:
        detail, ok = f"no answer within {timeout_s:g} s", False
    except Exception as exc:  # any failure is reported, never raised: this is a status page
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return ComponentHealth(name, ok, detail, round((time.perf_counter() - started) * 1000, 1))


async def check_all(settings: Settings, timeout_s: float = 5.0) -> list[ComponentHealth]:
    """Kafka, MongoDB, Redis (when configured) and the object store, each with its own verdict."""

    async def kafka() -> str:
        # A refused password or certificate is named as such, not as "Unable to bootstrap".
        await verify_kafka_access(settings, timeout_s)
        admin = KafkaAdmin(settings, request_timeout_ms=int(timeout_s * 1000))
        try:
            return await admin.health()
        finally:
            await admin.close()

    async def mongodb() -> str:
        client = mongo.create_client(settings, timeout_ms=int(timeout_s * 1000))
        try:
            return await mongo.health(mongo.database(client, settings))
        finally:
            client.close()

    async def redis() -> str:
        client = redis_client.create_client(settings)
        if client is None:
            return "not configured (in-process caches only)"
        try:
            return await redis_client.health(client)
        finally:
            await client.aclose()

    async def object_store() -> str:
        store = create_object_store(settings)
        try:
            return await store.health()
        finally:
            await store.close()

    checks = {"kafka": kafka, "mongodb": mongodb, "redis": redis, "object_store": object_store}
    return list(await asyncio.gather(*(_timed(name, fn, timeout_s) for name, fn in checks.items())))
