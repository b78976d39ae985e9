"""Rules in real MongoDB (secantusdb) with versions; cache in real Redis; pub/sub propagation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from core.config import Settings
from core.rules import RuleSpec, RuleTooComplex, parse_rule
from core.rules.spec import Group, Leaf
from infra import mongo, redis_client
from infra.rules_store import (
    RuleCache,
    RuleNotFound,
    RulesRepository,
    RuleUnreadable,
    rule_set_version,
)


@pytest.fixture
async def repository(service_settings: Settings):
    client = mongo.create_client(service_settings)
    db = mongo.database(client, service_settings)
    await mongo.ensure_indexes(db)
    yield RulesRepository(db)
    client.close()


@pytest.fixture
async def redis(service_settings: Settings):
    client = redis_client.create_client(service_settings)
    yield client
    await client.aclose()


async def test_edits_create_versions_and_keep_history(repository: RulesRepository) -> None:
    rule = await repository.create(parse_rule("Every mug must be on a coaster."), "ann")
    edited = await repository.update(
        rule.rule_id, parse_rule("Every mug must be on a coaster (critical)."), "bob"
    )
    assert (rule.version, edited.version) == (1, 2)
    assert (await repository.get(rule.rule_id)).spec.severity == "critical"
    assert (await repository.get(rule.rule_id, 1)).spec.severity == "warning"
    history = await repository.history(rule.rule_id)
    assert [(r.version, r.created_by) for r in history] == [(2, "bob"), (1, "ann")]
    with pytest.raises(RuleNotFound):
        await repository.get("rule-missing")


async def test_disabled_rules_leave_the_active_set(repository: RulesRepository) -> None:
    keep = await repository.create(parse_rule("At most 2 mugs per table."), "ann")
    drop = await repository.create(parse_rule("Handles should face right."), "ann")
    await repository.disable(drop.rule_id, "ann")
    active = {r.rule_id for r in await repository.active()}
    assert keep.rule_id in active
    assert drop.rule_id not in active
    assert len(await repository.history(drop.rule_id)) == 2


async def test_cache_reads_mongo_once_then_redis(repository, redis, unique_name: str) -> None:
    await repository.create(parse_rule("Every mug must be on a coaster."), "ann")
    first = RuleCache(repository, redis, unique_name)
    rule_set = await first.rule_set()
    await first.rule_set()
    assert first.loads_from_db == 1
    assert 0 < await redis.ttl(f"{unique_name}:rules:active") <= 1800
    second = RuleCache(repository, redis, unique_name)  # another process: served from Redis
    assert (await second.rule_set()).version == rule_set.version
    assert second.loads_from_db == 0


async def test_a_rule_change_reaches_a_running_worker_within_a_second(
    repository, redis, service_settings: Settings, unique_name: str
) -> None:
    rule = await repository.create(parse_rule("Mugs must be at least 5 cm from the edge."), "ann")
    worker_redis = redis_client.create_client(service_settings)
    worker = RuleCache(repository, worker_redis, unique_name)
    changed = asyncio.Event()
    worker.on_change(lambda rs: changed.set())
    before = (await worker.rule_set()).version
    changed.clear()
    ready = asyncio.Event()
    listener = asyncio.create_task(worker.listen(ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        api = RuleCache(repository, redis, unique_name)  # the writer
        await repository.update(
            rule.rule_id, parse_rule("Mugs must be at least 8 cm from the edge."), "bob"
        )
        started = time.perf_counter()
        await api.publish_change()
        await asyncio.wait_for(changed.wait(), 1.0)
        elapsed = time.perf_counter() - started
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await worker_redis.aclose()
    after = await worker.rule_set()
    assert after.version != before
    assert after.rules[0].version == 2
    assert elapsed < 1.0


def _deep_group(depth: int) -> Group:
    """Built without validation, as a caller bypassing the model's own check would."""
    group = Group.model_construct(
        logic="all", negate=False, conditions=[Leaf(fact="on_coaster", op="==", value=True)]
    )
    for _ in range(depth - 1):
        group = Group.model_construct(logic="all", negate=False, conditions=[group])
    return group


async def test_the_repository_refuses_rules_over_the_limits(repository: RulesRepository) -> None:
    base = parse_rule("Every mug must be on a coaster.")
    deep = RuleSpec.model_construct(**{**dict(base), "conditions": _deep_group(200)})
    with pytest.raises(RuleTooComplex, match="nest 200 levels deep"):
        await repository.create(deep, "ann")
    kept = await repository.create(base, "ann")
    with pytest.raises(RuleTooComplex, match="nest 200 levels deep"):
        await repository.update(kept.rule_id, deep, "ann")
    assert [r.version for r in await repository.latest()] == [1]


async def test_unreadable_or_uncompilable_rules_are_left_out_of_the_set(
    repository, redis, unique_name: str
) -> None:
    good = await repository.create(parse_rule("At most 2 mugs per table."), "ann")
    spec = parse_rule("Every mug must be on a coaster.").model_dump(mode="json")
    deep = {**spec, "conditions": {"conditions": [spec["conditions"]]}}
    for _ in range(200):
        deep["conditions"] = {"conditions": [deep["conditions"]]}
    unknown_fact = {
        **spec,
        "conditions": {"conditions": [{"fact": "temperature", "op": ">", "value": 3}]},
    }
    now = datetime.now(UTC)
    await repository._rules.insert_many(
        [
            {**deep, "rule_id": "rule-deep", "version": 1, "created_at": now},
            {**spec, "rule_id": "rule-typo", "version": "one", "created_at": now},
            {**unknown_fact, "rule_id": "rule-fact", "version": 1, "created_at": now},
        ]
    )
    cache = RuleCache(repository, redis, unique_name)
    rule_set = await cache.rule_set()
    assert [r.rule_id for r in rule_set.rules] == [good.rule_id]
    assert sorted(rule_set.skipped) == ["rule-deep@1", "rule-fact@1", "rule-typo@one"]
    assert rule_set.version == rule_set_version([good])  # only what is in force
    again = await RuleCache(repository, redis, unique_name).rule_set()  # from Redis
    assert [r.rule_id for r in again.rules] == [good.rule_id]
    assert again.version == rule_set.version
    listed = sorted(r.rule_id for r in await repository.latest())
    assert listed == sorted([good.rule_id, "rule-fact"])  # readable, though it cannot compile
    with pytest.raises(RuleUnreadable):
        await repository.get("rule-deep")
    replaced = await repository.update("rule-deep", parse_rule("Handles should face right."), "bob")
    assert replaced.version == 2


async def test_the_rule_cache_works_while_redis_is_down_and_resubscribes(
    repository: RulesRepository, tmp_path, unique_name: str
) -> None:
    """Redis is a cache: with it down the rules come from MongoDB; once it is back, the
    subscription returns and published changes reach the process again."""
    from redis.asyncio import Redis

    from infra.launchers import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    client = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
    other = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
    cache = RuleCache(repository, client, unique_name)
    writer = RuleCache(repository, other, unique_name)
    ready = asyncio.Event()
    listening = asyncio.create_task(cache.listen(ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await repository.create(parse_rule("Every mug must be on a coaster."), "ann")
        server.stop()
        assert len((await cache.reload()).rules) == 1  # from MongoDB, Redis refused
        await writer.publish_change()  # not announced, and says so; no exception
        server.start()
        await repository.create(parse_rule("At most 2 mugs per table."), "ann")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # resubscribed: an announced change drops the copy
            await writer.publish_change()
            await asyncio.sleep(0.5)
            if len((await cache.rule_set()).rules) == 2:
                break
        assert len((await cache.rule_set()).rules) == 2
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await client.aclose()
        await other.aclose()
        server.stop()
