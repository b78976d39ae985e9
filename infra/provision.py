"""Create what the system needs on its backing services: topics, indexes, bucket. Idempotent."""

from __future__ import annotations

from core.config import Settings
from infra import mongo
from infra.kafka_admin import KafkaAdmin, topic_specs
from infra.object_store import S3ObjectStore, create_object_store


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
        await mongo.ensure_indexes(mongo.database(client, settings))
        done[f"mongodb {settings.mongodb_db}"] = "indexes ensured"
    finally:
        client.close()

    store = create_object_store(settings)
    try:
        if isinstance(store, S3ObjectStore):
            await store.ensure_bucket()
        done["object store"] = await store.health()
    finally:
        await store.close()
    return done
