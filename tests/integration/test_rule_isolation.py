"""A bad rule stays with itself: a real `mugpos worker` completes every image when one stored rule
raises while evaluating (its verdict carries an error) or cannot even be loaded (it is skipped).

The rules are written straight into MongoDB before the worker starts, as a hand edit or a release
without limits would have left them; images are published with plain aiokafka.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.config import Settings
from core.rules import parse_rule
from infra import mongo
from schemas.messages import AnalysisResult
from schemas.topics import TopicNames
from tests.integration.workers import scene_jpeg

SEEDS = range(4)  # generated scenes that hold mugs (so a scale is known and mug rules run)
GOOD = "rule-good"
RAISING = "rule-raising"
UNLOADABLE = "rule-unloadable"


def _document(rule_id: str, spec: dict) -> dict:
    stored = {"rule_id": rule_id, "version": 1, "created_at": datetime.now(UTC), "created_by": "t"}
    return stored | spec


def raising_spec() -> dict:
    """Valid and compilable, yet it raises on every mug once the picture's scale is known: the
    engine converts a px threshold with float(), and the handle fact compares with text, so
    "left" px makes float("left") raise ValueError. No check refuses the combination, which is
    what makes it a realistic rule that fails only at evaluation time."""
    spec = parse_rule("Handles should face left.").model_dump(mode="json")
    spec["conditions"] = {
        "conditions": [{"fact": "handle", "op": "==", "value": "left", "unit": "px"}]
    }
    return spec | {"name": "handle left in pixels"}


def unloadable_spec(depth: int = 200) -> dict:
    """Written before the size limits existed: 200 groups deep, refused by every reader now."""
    spec = parse_rule("Every mug must be on a coaster.").model_dump(mode="json")
    group = spec["conditions"]
    for _ in range(depth - 1):
        group = {"logic": "all", "conditions": [group]}
    return spec | {"conditions": group, "name": "too deep"}


def good_spec() -> dict:
    return parse_rule("At most 4 mugs per table.").model_dump(mode="json")


async def _insert(settings: Settings, docs: list[dict]) -> None:
    client = mongo.create_client(settings)
    try:
        await mongo.database(client, settings)[mongo.RULES].insert_many(docs)
    finally:
        client.close()


@pytest.fixture
def bad_rules(deployment: Settings) -> Settings:
    """The rules, stored before the `pipeline` fixture (listed after this one) starts its worker."""
    docs = [
        _document(GOOD, good_spec()),
        _document(RAISING, raising_spec()),
        _document(UNLOADABLE, unloadable_spec()),
    ]
    asyncio.run(_insert(deployment, docs))
    return deployment


async def _publish_and_collect(settings: Settings, timeout_s: float) -> dict[str, AnalysisResult]:
    topics = TopicNames(settings.topic_prefix)
    ids = {f"iso-{seed}": scene_jpeg(seed) for seed in SEEDS}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for request_id, image in ids.items():
            await producer.send(topics.images, image, headers=[("request-id", request_id.encode())])
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topics.results, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, AnalysisResult] = {}
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while set(ids) - set(found) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    found[record.key.decode()] = AnalysisResult.model_validate_json(record.value)
    finally:
        await consumer.stop()
    assert set(found) == set(ids), f"results missing for {sorted(set(ids) - set(found))}"
    return found


async def test_one_raising_and_one_unloadable_rule_do_not_stop_results(
    bad_rules: Settings, pipeline: Settings
) -> None:
    results = await _publish_and_collect(pipeline, timeout_s=45)
    for request_id, result in results.items():
        assert result.status == "ok", request_id
        verdicts = {v.rule_id: v for v in result.verdicts}
        assert set(verdicts) == {GOOD, RAISING}, request_id  # the unloadable rule is left out
        good = verdicts[GOOD]
        assert good.error is None
        assert good.passed is True
        assert good.message.startswith("At most 4 mugs per table")
        assert result.positioning is not None
        assert result.positioning["mug_count"] > 0, request_id
        raising = verdicts[RAISING]
        assert raising.passed is None
        assert raising.error == "rule could not be evaluated: ValueError"
        assert (raising.actions, raising.subjects) == ([], [])
