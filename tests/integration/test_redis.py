"""Real redis-server through redis-py's asyncio client."""

from __future__ import annotations

import asyncio

from core.config import Settings
from infra import redis_client


async def test_set_get_with_ttl_and_health(service_settings: Settings, unique_name: str) -> None:
    client = redis_client.create_client(service_settings)
    assert client is not None
    try:
        await client.set(f"{unique_name}:result", b'{"status":"ok"}', ex=300)
        assert await client.get(f"{unique_name}:result") == b'{"status":"ok"}'
        assert 0 < await client.ttl(f"{unique_name}:result") <= 300
        assert (await redis_client.health(client)).startswith("redis ")
    finally:
        await client.aclose()


async def test_pubsub_delivers_between_two_clients(
    service_settings: Settings, unique_name: str
) -> None:
    subscriber = redis_client.create_client(service_settings)
    publisher = redis_client.create_client(service_settings)
    assert subscriber is not None
    assert publisher is not None
    pubsub = subscriber.pubsub()
    try:
        await pubsub.subscribe(f"{unique_name}:rules")
        assert await publisher.publish(f"{unique_name}:rules", b"invalidate r1") == 1
        async with asyncio.timeout(5):
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message:
                    break
        assert message["data"] == b"invalidate r1"
    finally:
        await pubsub.aclose()
        await subscriber.aclose()
        await publisher.aclose()


def test_no_client_without_a_url() -> None:
    assert redis_client.create_client(Settings(_env_file=None)) is None
