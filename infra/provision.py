"""Create what the system needs on its backing services: topics, indexes, bucket, and the
retention of results and originals (infra.retention). Idempotent."""

from __future__ import annotations

from core.config import Settings
from infra import mongo
from infra.kafka_admin import KafkaAdmin, topic_specs
from infra.object_store import S3ObjectStore, create_object_store
from infra.retention import apply_result_retention, expiry_by_prefix


async def provision(settings: Settings) -> dict[str, str]:
    """Declare topics, create indexes and the bucket; returns what was done, for the log."""
    done: dict[str, str] = {}
    admin = KafkaAdmin(settings)
    try:
        for topic, outcome in (await admin.declare(topic_specs(settings))).items():
            done[f"topic {topic}"] = outcome
    finally:
        await admin.close()

    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        done[f"mongodb {settings.mongodb_db}"] = "indexes ensured"
        retention = await apply_result_retention(db, settings.result_retention_days)
        done[f"mongodb {settings.mongodb_db} retention"] = retention
    finally:
        client.close()

    store = create_object_store(settings)
    try:
        if isinstance(store, S3ObjectStore):
            await store.ensure_bucket()
            expiring = await store.set_expiry(expiry_by_prefix(settings))
            done["object store lifecycle"] = (
                ", ".join(f"{p} after {d} day(s)" for p, d in expiring.items()) or "none"
            )
        elif any(d is not None for d in expiry_by_prefix(settings).values()):
            done["object store lifecycle"] = "this store has none: run `mugpos gc` daily"
        done["object store"] = await store.health()
    finally:
        await store.close()
    return done
