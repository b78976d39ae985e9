"""Change announcements over Redis pub/sub: a writer says what changed, every process drops its
copy of it at once.

Redis is a cache here, never a dependency: an announcement that cannot be sent is logged and the
listeners, resubscribing with backoff, treat every resubscription as a gap (they may have missed
messages meanwhile) and drop everything they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
T = TypeVar("T")


async def cache_call(call: Awaitable[T], what: str) -> T | None:
    """A Redis call whose failure only costs speed (None)."""
    try:
        return await call
    except (RedisError, OSError) as exc:
        log.warning("%s in Redis unavailable (%s); using MongoDB", what, exc)
        return None


class ChangeFeed:
    def __init__(self, redis: Redis | None, channel: str, what: str) -> None:
        self._redis = redis
        self.channel = channel
        self._what = what  # "rules", "sources": for the log

    async def announce(self, payload: bytes = b"changed") -> bool:
        """Tell every listening process; False when Redis could not be reached."""
        if self._redis is None:
            return False
        sent = await cache_call(self._redis.publish(self.channel, payload), f"{self._what} cache")
        if sent is None:
            log.warning(
                "%s change not announced (Redis unavailable): workers catch up when their "
                "Redis subscription is back",
                self._what,
            )
            return False
        return True

    async def follow(
        self,
        on_change: Callable[[bytes], Awaitable[None]],
        on_gap: Callable[[], None],
        ready: asyncio.Event | None = None,
    ) -> None:
        """Run until cancelled: `on_change(payload)` for every announcement. While Redis is away,
        resubscribe with backoff and call `on_gap()` after each attempt."""
        if self._redis is None:
            if ready:
                ready.set()
            return
        loop = asyncio.get_running_loop()
        delay = 0.0
        while True:
            started = loop.time()
            try:
                await self._subscribed(on_change, ready)
            except (RedisError, OSError) as exc:
                long_lived = loop.time() - started > 60
                delay = 1.0 if long_lived else min(30.0, max(1.0, delay * 2))
                log.warning(
                    "%s change subscription lost (%s); retrying in %.0f s", self._what, exc, delay
                )
            if ready:
                ready.set()  # a worker starts without Redis; it reads MongoDB
            await asyncio.sleep(delay)
            on_gap()

    async def _subscribed(
        self, on_change: Callable[[bytes], Awaitable[None]], ready: asyncio.Event | None
    ) -> None:
        pubsub = self._redis.pubsub()  # type: ignore[union-attr]
        try:
            await pubsub.subscribe(self.channel)
            if ready:
                ready.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    await on_change(message.get("data") or b"")
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
