"""Read back the positioning facts stored with past results (for back-testing rules)."""

from __future__ import annotations

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import DESCENDING

from core.positioning.facts import SceneFacts
from core.positioning.serialize import facts_from_dict
from infra.mongo import ANALYSIS_RESULTS


async def recent_facts(db: AsyncIOMotorDatabase, limit: int) -> list[tuple[str, SceneFacts]]:
    """(request_id, facts) of the newest `limit` results that carry positioning facts."""
    cursor = (
        db[ANALYSIS_RESULTS]
        .find({"positioning": {"$exists": True}}, {"request_id": 1, "positioning": 1})
        .sort("timestamp", DESCENDING)
        .limit(limit)
    )
    return [(doc["request_id"], facts_from_dict(doc["positioning"])) async for doc in cursor]
