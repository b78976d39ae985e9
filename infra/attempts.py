"""How often processing one input has failed, counted in MongoDB so the count survives a crash.

An input that fails for no reason we can name is retried a few times (the failure may be a
passing glitch) and then dead-lettered, so a poison message never stalls its partition. The
count must outlive the worker: a crash loop would otherwise retry forever. Only failures are
written; an input that succeeds first time costs nothing here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReturnDocument

from infra.mongo import DELIVERY_ATTEMPTS


def attempt_key(stage: str, topic: str, partition: int, offset: int) -> str:
    """One input of one stage: a redelivered copy has the same coordinates, a replay does not."""
    return f"{stage}:{topic}:{partition}:{offset}"


class FailureCounter:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self._attempts = db[DELIVERY_ATTEMPTS]

    async def record(self, key: str, error: str) -> int:
        """Count one more failure of `key`; returns the failures so far, this one included."""
        doc = await self._attempts.find_one_and_update(
            {"_id": key},
            {"$inc": {"failures": 1}, "$set": {"updated_at": datetime.now(UTC), "error": error}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["failures"])

    async def forget(self, key: str) -> None:
        await self._attempts.delete_one({"_id": key})
