"""Single-use WebSocket tickets, so a browser never puts its bearer token in a URL.

Browsers cannot set headers on a WebSocket, and a URL ends up in proxies' logs, browser history
and referrers. So a browser trades its token for a ticket over an authenticated POST and opens the
socket with `?ticket=`: a random value worth nothing after `TICKET_TTL_S` or after its first use.

Tickets live in Redis (`SET … PX`, redeemed with `GETDEL`), or in MongoDB when Redis is not
configured (redeemed with `find_one_and_delete`): both are shared by every API process, so a
ticket issued by one of `mugpos api --workers N` opens a socket on any other. Only the ticket's
sha256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import orjson
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.access import Principal

TICKET_TTL_S = 30
WS_TICKETS = "ws_tickets"  # MongoDB collection, used without Redis


class TicketStoreUnavailable(RuntimeError):
    """The store of tickets cannot be reached: no ticket can be issued or redeemed."""


class TicketStore:
    def __init__(
        self,
        redis: Redis | None,
        db: AsyncIOMotorDatabase,
        prefix: str,
        ttl_s: float = TICKET_TTL_S,
    ) -> None:
        self._redis = redis
        self._tickets = db[WS_TICKETS]
        self._prefix = prefix
        self.ttl_s = ttl_s

    async def issue(self, principal: Principal) -> str:
        """A new ticket standing for `principal` until its first use or `ttl_s`."""
        ticket = secrets.token_urlsafe(32)
        holder = {"subject": principal.subject, "role": principal.role, "kind": principal.kind}
        try:
            if self._redis is not None:
                await self._redis.set(
                    self._key(ticket), orjson.dumps(holder), px=int(self.ttl_s * 1000)
                )
            else:
                now = datetime.now(UTC)
                await self._tickets.delete_many({"expires_at": {"$lte": now}})
                await self._tickets.insert_one(
                    {
                        "_id": _digest(ticket),
                        **holder,
                        "expires_at": now + timedelta(seconds=self.ttl_s),
                    }
                )
        except (RedisError, PyMongoError, OSError) as exc:
            raise TicketStoreUnavailable(type(exc).__name__) from exc
        return ticket

    async def redeem(self, ticket: str) -> Principal | None:
        """Who the ticket stands for, once: None when unknown, expired or already used."""
        try:
            if self._redis is not None:
                raw = await self._redis.getdel(self._key(ticket))
                holder = orjson.loads(raw) if raw is not None else None
            else:
                holder = await self._tickets.find_one_and_delete(
                    {"_id": _digest(ticket), "expires_at": {"$gt": datetime.now(UTC)}}
                )
        except (RedisError, PyMongoError, OSError) as exc:
            raise TicketStoreUnavailable(type(exc).__name__) from exc
        if holder is None:
            return None
        return Principal(holder["subject"], holder["role"], holder["kind"])

    def _key(self, ticket: str) -> str:
        return f"{self._prefix}:ws-ticket:{_digest(ticket)}"


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()
