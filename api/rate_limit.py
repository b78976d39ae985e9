"""Request rate limits with `limits`, and the login throttle: shared through Redis when
configured, else in process."""

from __future__ import annotations

import logging
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from core.config import Settings
from infra.login_throttle import LoginPolicy, LoginThrottle

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        # Under a burst, wait for a pooled connection instead of failing the request.
        pool = (
            BlockingConnectionPool.from_url(
                settings.redis_url.get_secret_value(), max_connections=64, timeout=5
            )
            if settings.redis_url is not None
            else None
        )
        self._storage: Storage = (
            RedisStorage(
                "async+" + settings.redis_url.get_secret_value(),
                implementation="redispy",
                key_prefix=f"{settings.topic_prefix}:ratelimit",
                connection_pool=pool,
            )
            if settings.redis_url is not None
            else MemoryStorage()
        )
        self.login = LoginThrottle(
            Redis(connection_pool=pool) if pool is not None else None,
            settings.topic_prefix,
            LoginPolicy.from_settings(settings),
        )
        self._limiter = FixedWindowRateLimiter(self._storage)
        self._per_caller = parse(settings.rate_limit)
        self._per_ip = parse(settings.rate_limit_ip)

    @property
    def shared(self) -> bool:
        return isinstance(self._storage, RedisStorage)

    async def retry_after(self, caller: str | None, ip: str) -> int | None:
        """None when the request may go ahead, else seconds until it may."""
        checks = [(self._per_ip, "ip", ip)]
        if caller is not None:
            checks.append((self._per_caller, "caller", caller))
        try:
            for item, kind, who in checks:
                if not await self._limiter.hit(item, kind, who):
                    stats = await self._limiter.get_window_stats(item, kind, who)
                    return max(1, int(stats.reset_time - time.time()) + 1)
        except (RedisError, OSError) as exc:
            # Fail open: a Redis outage must not turn every request into an error.
            log.warning("rate limiter unavailable, letting the request through: %s", exc)
        return None
