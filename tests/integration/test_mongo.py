"""secantusdb over TCP through motor: indexes declared idempotently, uniqueness enforced."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pymongo.errors import DuplicateKeyError

from core.config import Settings
from infra import mongo


@pytest.fixture
async def db(service_settings: Settings):
    client = mongo.create_client(service_settings)
    yield mongo.database(client, service_settings)
    client.close()


async def test_indexes_are_created_and_repeatable(db) -> None:
    await mongo.ensure_indexes(db)
    await mongo.ensure_indexes(db)  # a second process starting must not fail
    for collection, specs in mongo.INDEXES.items():
        info = await db[collection].index_information()
        for spec in specs:
            assert spec.name in info, f"{collection}.{spec.name} missing"
            assert bool(info[spec.name].get("unique")) == spec.unique


async def test_request_id_is_unique_in_analysis_results(db) -> None:
    await mongo.ensure_indexes(db)
    results = db[mongo.ANALYSIS_RESULTS]
    document = {"request_id": "req-1", "timestamp": datetime.now(UTC), "status": "ok"}
    await results.insert_one(dict(document))
    with pytest.raises(DuplicateKeyError):
        await results.insert_one(dict(document))
    await results.insert_one({**document, "request_id": "req-2"})
    assert await results.count_documents({}) == 2


async def test_rule_versions_are_unique_per_rule(db) -> None:
    await mongo.ensure_indexes(db)
    rules = db[mongo.RULES]
    await rules.insert_one({"rule_id": "r", "version": 1, "name": "on coaster", "enabled": True})
    await rules.insert_one({"rule_id": "r", "version": 2, "name": "on coaster", "enabled": True})
    with pytest.raises(DuplicateKeyError):
        await rules.insert_one({"rule_id": "r", "version": 2, "name": "x", "enabled": True})


async def test_indexed_query_returns_newest_first(db) -> None:
    await mongo.ensure_indexes(db)
    logs = db[mongo.ACTIVITY_LOGS]
    await logs.insert_many(
        [
            {"user_id": "ann", "action": f"a{i}", "timestamp": datetime(2026, 1, i + 1, tzinfo=UTC)}
            for i in range(5)
        ]
    )
    newest = await logs.find({"user_id": "ann"}).sort("timestamp", -1).limit(2).to_list(None)
    assert [doc["action"] for doc in newest] == ["a4", "a3"]
    assert newest[0]["timestamp"].tzinfo is not None


async def test_health_pings(db) -> None:
    assert await mongo.health(db) == f"database {db.name} answers ping"
