"""Audit trail: every write and login through the API lands in `activity_logs`."""

from __future__ import annotations

from datetime import UTC, datetime

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import BulkWriteError

from infra.mongo import ACTIVITY_LOGS

_DUPLICATE_KEY = 11000


def entry(
    *,
    user_id: str,
    action: str,
    resource: str,
    outcome: str = "ok",
    ip: str | None = None,
    detail: dict[str, object] | None = None,
) -> dict[str, object]:
    """One audit document, timestamped now (when the action happened, not when it is written)."""
    return {
        "user_id": user_id,
        "action": action,
        "resource": resource,
        "outcome": outcome,
        "ip": ip,
        "detail": detail or {},
        "timestamp": datetime.now(UTC),
    }


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
        entry(
            user_id=user_id, action=action, resource=resource, outcome=outcome, ip=ip, detail=detail
        )
    )


async def record_many(db: AsyncIOMotorDatabase, entries: list[dict[str, object]]) -> None:
    """Several entries in one round trip (the API's uploads, batched off the request path).

    Safe to retry with the same dicts: the driver gives each its `_id` on the first attempt, so
    entries that made it then are refused as duplicates, not written twice."""
    try:
        await db[ACTIVITY_LOGS].insert_many(entries, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise


async def recent(db: AsyncIOMotorDatabase, limit: int = 100) -> list[dict[str, object]]:
    cursor = db[ACTIVITY_LOGS].find({}, {"_id": 0}).sort("timestamp", -1).limit(limit)
    return await cursor.to_list(None)
