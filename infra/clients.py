"""The storage clients a process shares: MongoDB, Redis (optional) and the object store.

The pipeline worker (streams.context) and the API (api.services) open the same three clients
from the same settings; opening and closing them here keeps the two from drifting apart (time
outs, the database name, the order of closing). Kafka clients are not part of the bundle: the
worker's come from Faust, the API's are its own (a producer and topic followers).
"""

from __future__ import annotations

from dataclasses import dataclass

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from redis.asyncio import Redis

from core.config import Settings
from infra import mongo, redis_client
from infra.object_store import ObjectStore, create_object_store


@dataclass
class Clients:
    mongo_client: AsyncIOMotorClient
    db: AsyncIOMotorDatabase
    redis: Redis | None
    store: ObjectStore

    @classmethod
    def open(cls, settings: Settings) -> Clients:
        """Every client connects lazily, on first use: opening needs no running service."""
        client = mongo.create_client(settings)
        return cls(
            mongo_client=client,
            db=mongo.database(client, settings),
            redis=redis_client.create_client(settings),
            store=create_object_store(settings),
        )

    async def close(self) -> None:
        """The object store first (its thread pool may still hold a write), then the databases."""
        await self.store.close()
        self.mongo_client.close()
        if self.redis is not None:
            await self.redis.aclose()
