"""Redis through redis-py's asyncio client; optional, since the embedded demo runs without it."""

from __future__ import annotations

from redis.asyncio import Redis

from core.config import Settings


def create_client(settings: Settings) -> Redis | None:
    """A client for MUGPOS_REDIS_URL, or None when Redis is not configured. Connects lazily."""
    if settings.redis_url is None:
        return None
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


async def health(client: Redis) -> str:
    if not await client.ping():
        raise RuntimeError("PING was not answered with PONG")
    info = await client.info("server")
    return f"redis {info.get('redis_version', '?')}"
