"""Audit trail: every write and login through the API lands in `activity_logs`."""

from __future__ import annotations

from datetime import UTC, datetime

from motor.motor_asyncio import AsyncIOMotorDatabase

from infra.mongo import ACTIVITY_LOGS


async def record(
    db: AsyncIOMotorDatabase,
    *,
    user_id: str,
    action: str,
    resource: str,
    outcome: str = "ok",
    ip: str | None = None,
    detail: dict[str, object] | None = None,
) -> None:
    await db[ACTIVITY_LOGS].insert_one(
        {
            "user_id": user_id,
            "action": action,
            "resource": resource,
            "outcome": outcome,
            "ip": ip,
            "detail": detail or {},
            "timestamp": datetime.now(UTC),
        }
    )


async def recent(db: AsyncIOMotorDatabase, limit: int = 100) -> list[dict[str, object]]:
    cursor = db[ACTIVITY_LOGS].find({}, {"_id": 0}).sort("timestamp", -1).limit(limit)
    return await cursor.to_list(None)
