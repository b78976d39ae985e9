"""How long results and originals are kept (MUGPOS_RESULT_RETENTION_DAYS,
MUGPOS_ORIGINAL_RETENTION_DAYS), applied where the data lives.

MongoDB forgets results by a TTL index on their completion time (`timestamp`); the S3 bucket (R2
in production) forgets objects by lifecycle rules on the two prefixes. Both are set by
`mugpos setup`, idempotently, and changed when the settings change. A store without lifecycle
rules (the local directory store) is swept by `mugpos gc`, which works on any store.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING

from core.config import Settings
from infra.mongo import ANALYSIS_RESULTS
from infra.object_store import ObjectStore
from infra.object_store.keys import ORIGINALS_PREFIX, RESULTS_PREFIX

RESULTS_TTL_INDEX = "results_retention"
DAY_S = 86_400


def expiry_by_prefix(settings: Settings) -> dict[str, int | None]:
    """Days objects under each managed prefix are kept (None: forever)."""
    return {
        RESULTS_PREFIX: settings.result_retention_days,
        ORIGINALS_PREFIX: settings.original_retention_days,
    }


async def apply_result_retention(db: AsyncIOMotorDatabase, days: int | None) -> str:
    """The TTL index on results as `days` says: created, retuned (collMod) or dropped."""
    results = db[ANALYSIS_RESULTS]
    indexes = {ix["name"]: ix async for ix in results.list_indexes()}
    current = indexes.get(RESULTS_TTL_INDEX)
    if days is None:
        if current is not None:
            await results.drop_index(RESULTS_TTL_INDEX)
        return "results kept until deleted"
    seconds = days * DAY_S
    if current is None:
        await results.create_index(
            [("timestamp", ASCENDING)], name=RESULTS_TTL_INDEX, expireAfterSeconds=seconds
        )
    elif current.get("expireAfterSeconds") != seconds:
        await db.command(
            {
                "collMod": ANALYSIS_RESULTS,
                "index": {"name": RESULTS_TTL_INDEX, "expireAfterSeconds": seconds},
            }
        )
    return f"results expire {days} day(s) after completion"


async def sweep(
    store: ObjectStore, days_by_prefix: dict[str, int | None], now: datetime | None = None
) -> dict[str, int]:
    """Delete objects older than their prefix's days; the number deleted per prefix."""
    now = now or datetime.now(UTC)
    deleted: dict[str, int] = {}
    for prefix, days in days_by_prefix.items():
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        old = [info.key for info in await store.list(prefix) if info.last_modified < cutoff]
        for start in range(0, len(old), 64):
            await asyncio.gather(*(store.delete(key) for key in old[start : start + 64]))
        deleted[prefix] = len(old)
    return deleted
