"""MongoDB through motor: one client per process, collections and indexes declared in one place."""

from __future__ import annotations

from dataclasses import dataclass

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, IndexModel

from core.config import Settings

ANALYSIS_RESULTS = "analysis_results"
RULES = "rules"
ACTIVITY_LOGS = "activity_logs"
USERS = "users"
API_KEYS = "api_keys"
DLQ_REPLAYS = "dlq_replays"  # dead letters already replayed, by topic/partition/offset
DELIVERY_ATTEMPTS = "delivery_attempts"
SOURCES = "sources"
SOURCE_STATES = "source_states"  # tracks and held verdicts, one document per source
WEBHOOK_ENDPOINTS = "webhook_endpoints"  # by name; secrets encrypted
WEBHOOK_DELIVERIES = "webhook_deliveries"  # one document per (alert event, endpoint)
SOURCE_STREAMS = "source_streams"  # managed camera streams, by source id, with their health
DELIVERY_LOG_DAYS = 30


@dataclass(frozen=True, slots=True)
class IndexSpec:
    keys: tuple[tuple[str, int], ...]
    name: str
    unique: bool = False
    expire_after_s: int | None = None

    def model(self) -> IndexModel:
        options: dict[str, object] = {"name": self.name, "unique": self.unique}
        if self.expire_after_s is not None:
            options["expireAfterSeconds"] = self.expire_after_s
        return IndexModel(list(self.keys), **options)


# Every query path gets an index: secantusdb (like MongoDB) is slow on unindexed scans.
INDEXES: dict[str, tuple[IndexSpec, ...]] = {
    ANALYSIS_RESULTS: (
        IndexSpec((("request_id", ASCENDING),), "request_id_unique", unique=True),
        IndexSpec((("source_id", ASCENDING), ("timestamp", DESCENDING)), "source_time"),
        IndexSpec((("status", ASCENDING), ("timestamp", DESCENDING)), "status_time"),
        IndexSpec((("timestamp", DESCENDING),), "time"),
        IndexSpec((("failed_rules", ASCENDING), ("timestamp", DESCENDING)), "failed_rule_time"),
        IndexSpec((("min_score", ASCENDING), ("timestamp", DESCENDING)), "score_time"),
    ),
    RULES: (
        IndexSpec(
            (("rule_id", ASCENDING), ("version", DESCENDING)), "rule_version_unique", unique=True
        ),
        IndexSpec((("enabled", ASCENDING), ("name", ASCENDING)), "enabled_name"),
    ),
    ACTIVITY_LOGS: (
        IndexSpec((("user_id", ASCENDING), ("timestamp", DESCENDING)), "user_time"),
        IndexSpec((("timestamp", DESCENDING),), "time"),
    ),
    SOURCES: (
        IndexSpec(
            (("source_id", ASCENDING), ("version", DESCENDING)),
            "source_version_unique",
            unique=True,
        ),
    ),
    USERS: (IndexSpec((("username", ASCENDING),), "username_unique", unique=True),),
    API_KEYS: (IndexSpec((("key_id", ASCENDING),), "key_id_unique", unique=True),),
    DLQ_REPLAYS: (
        IndexSpec(
            (("dlq_topic", ASCENDING), ("partition", ASCENDING), ("offset", ASCENDING)),
            "position_unique",
            unique=True,
        ),
    ),
    WEBHOOK_DELIVERIES: (
        IndexSpec(
            (("created_at", DESCENDING),), "created_ttl", expire_after_s=DELIVERY_LOG_DAYS * 86_400
        ),
        IndexSpec((("endpoint", ASCENDING), ("created_at", DESCENDING)), "endpoint_time"),
        IndexSpec((("status", ASCENDING), ("created_at", DESCENDING)), "status_time"),
    ),
    # By source id (_id); the streams service reads them all every 2 s. The index serves listing
    # the streams in a given state (failed, reconnecting) without a scan.
    SOURCE_STREAMS: (IndexSpec((("health.state", ASCENDING), ("_id", ASCENDING)), "state"),),
    # Looked up by _id only; the TTL index forgets the counts of inputs long since settled.
    DELIVERY_ATTEMPTS: (
        IndexSpec((("updated_at", ASCENDING),), "updated_ttl", expire_after_s=7 * 24 * 3600),
    ),
}


def create_client(settings: Settings, *, timeout_ms: int = 5000) -> AsyncIOMotorClient:
    """A motor client; it connects lazily on first use."""
    return AsyncIOMotorClient(
        settings.mongodb_uri.get_secret_value(),
        serverSelectionTimeoutMS=timeout_ms,
        tz_aware=True,
        appname="mugpos",
    )


def database(client: AsyncIOMotorClient, settings: Settings) -> AsyncIOMotorDatabase:
    return client[settings.mongodb_db]


async def ensure_indexes(db: AsyncIOMotorDatabase) -> None:
    """Create every collection's indexes; idempotent, so every process runs it at start."""
    for collection, specs in INDEXES.items():
        await db[collection].create_indexes([spec.model() for spec in specs])


async def health(db: AsyncIOMotorDatabase) -> str:
    reply = await db.command("ping")
    if reply.get("ok") != 1:
        raise RuntimeError(f"ping answered {reply!r}")
    return f"database {db.name} answers ping"
