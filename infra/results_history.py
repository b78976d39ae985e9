"""Stored results in MongoDB: the document shapes (a result, a `pending` placeholder) and the
queries the API, the dashboard and back-tests run over many of them. Every query filter leads
with an indexed field (see infra.mongo.INDEXES).

Reading or writing *one* result by request id is infra.result_store.ResultStore's job (Redis,
MongoDB and the object store together); this module holds what it and the listings share."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import DESCENDING

from core.positioning.facts import SceneFacts
from core.positioning.serialize import facts_from_dict
from infra.mongo import ANALYSIS_RESULTS
from schemas.messages import AnalysisResult

# The derived, indexed fields stay internal: readers get the AnalysisResult's own fields.
STORED_PROJECTION = {"_id": 0, "timestamp": 0, "failed_rules": 0, "min_score": 0}


def result_document(result: AnalysisResult) -> dict[str, Any]:
    """The result plus the derived fields its query paths are indexed on."""
    scores = [m["score"] for m in (result.positioning or {}).get("mugs", [])]  # type: ignore[union-attr]
    return result.model_dump(mode="json") | {
        "timestamp": result.completed_at,
        "failed_rules": sorted({v.rule_id for v in result.verdicts if v.passed is False}),
        "min_score": min(scores) if scores else None,
    }


def pending_document(request_id: str, source_id: str, submitted_at: datetime) -> dict[str, Any]:
    """The placeholder of an accepted upload until the sink's result replaces it; its
    `timestamp` puts it in the listings (`status=pending`) at its submission time."""
    return {
        "request_id": request_id,
        "source_id": source_id,
        "status": "pending",
        "submitted_at": submitted_at.isoformat(),
        "completed_at": submitted_at.isoformat(),
        "timestamp": submitted_at,
    }


async def record_pending(
    db: AsyncIOMotorDatabase, request_id: str, source_id: str, submitted_at: datetime
) -> None:
    """One placeholder, written now and insert-only (the API batches them instead:
    ResultStore.mark_pending)."""
    await db[ANALYSIS_RESULTS].update_one(
        {"request_id": request_id},
        {"$setOnInsert": pending_document(request_id, source_id, submitted_at)},
        upsert=True,
    )


@dataclass(frozen=True, slots=True)
class ResultQuery:
    source_id: str | None = None
    status: str | None = None
    failed_rule: str | None = None
    min_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None


class BadCursor(ValueError):
    pass


def as_utc(when: datetime) -> datetime:
    """`when` in UTC (naive counts as UTC), as MongoDB compares it. ValueError when its offset
    moves it past year 1 or 9999: pymongo would fail with an OverflowError encoding the query."""
    try:
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside the years 1 to 9999 once converted to UTC") from None


def encode_cursor(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(
        orjson.dumps([document["completed_at"], document["request_id"]])
    ).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        when, request_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return as_utc(datetime.fromisoformat(when)), str(request_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("the cursor is not one this API returned") from exc


async def query_results(
    db: AsyncIOMotorDatabase, query: ResultQuery, *, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; returns (page, next cursor or None)."""
    clauses: list[dict[str, Any]] = []
    if query.source_id is not None:
        clauses.append({"source_id": query.source_id})
    if query.status is not None:
        clauses.append({"status": query.status})
    if query.failed_rule is not None:
        clauses.append({"failed_rules": query.failed_rule})
    if query.min_score is not None:
        clauses.append({"min_score": {"$gte": query.min_score}})
    if query.since is not None:
        clauses.append({"timestamp": {"$gte": query.since}})
    if query.until is not None:
        clauses.append({"timestamp": {"$lt": query.until}})
    if cursor is not None:
        when, request_id = _decode_cursor(cursor)
        clauses.append(
            {
                "$or": [
                    {"timestamp": {"$lt": when}},
                    {"timestamp": when, "request_id": {"$lt": request_id}},
                ]
            }
        )
    found = (
        await db[ANALYSIS_RESULTS]
        .find({"$and": clauses} if clauses else {}, STORED_PROJECTION)
        .sort([("timestamp", DESCENDING), ("request_id", DESCENDING)])
        .limit(limit + 1)
        .to_list(None)
    )
    page = found[:limit]
    return page, encode_cursor(page[-1]) if len(found) > limit else None


async def recent_facts(db: AsyncIOMotorDatabase, limit: int) -> list[tuple[str, SceneFacts]]:
    """(request_id, facts) of the newest `limit` results that carry positioning facts."""
    cursor = (
        db[ANALYSIS_RESULTS]
        .find({"positioning": {"$exists": True}}, {"request_id": 1, "positioning": 1})
        .sort("timestamp", DESCENDING)
        .limit(limit)
    )
    return [
        (doc["request_id"], facts_from_dict(doc["positioning"]))
        async for doc in cursor
        if doc.get("positioning")
    ]


async def recent_results(
    db: AsyncIOMotorDatabase, since: datetime, limit: int
) -> list[dict[str, Any]]:
    """The newest results since a time, with what the dashboard summarises (time index)."""
    fields = {"status": 1, "timings_ms": 1, "latency_ms": 1, "error": 1, "model": 1, "_id": 0}
    cursor = (
        db[ANALYSIS_RESULTS]
        .find({"timestamp": {"$gte": since}}, fields)
        .sort("timestamp", DESCENDING)
        .limit(limit)
    )
    return await cursor.to_list(None)
