"""Inputs a stage keeps failing on become dead letters; their partition keeps moving.

The worker is tests.integration.faulty_worker: the real worker, with a model that raises on one
marked image and a preprocessing step that raises on one marked input.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from agents.pipeline import FUSED
from core.config import Settings
from infra import mongo
from schemas.messages import DeadLetter
from schemas.topics import TopicNames
from tests.integration.faulty_worker import MODEL_POISON_RGB, PREPROCESS_POISON
from tests.integration.kafka_io import by_request_id, collect, eventually, publish, results
from tests.integration.workers import WorkerProcess, scene_jpeg
from tests.unit.test_image_decode import encode


async def test_a_model_error_on_one_image_fails_it_alone(deployment: Settings, tmp_path: Path):
    """The batch fails, each image runs alone: one `failed` result + dead letter, the rest ok."""
    poison = encode(Image.new("RGB", (640, 480), MODEL_POISON_RGB), "PNG")
    good = [f"good-{i}" for i in range(7)]
    items = [(rid, scene_jpeg(i, 320), [], 0) for i, rid in enumerate(good[:3])]
    items += [("model-poison", poison, [], 0)]
    items += [(rid, scene_jpeg(i + 3, 320), [], 0) for i, rid in enumerate(good[3:])]
    worker = WorkerProcess(deployment, tmp_path, "w", {"MUGPOS_MAX_WAIT_MS": "500"}, faulty=True)
    names = TopicNames(deployment.topic_prefix)
    try:
        await publish(deployment, items)  # one partition, together: they share a batch
        published = results(await collect(deployment, names.results, [*good, "model-poison"], 120))
        letters = by_request_id(await collect(deployment, names.dlq, ["model-poison"], 30))
    finally:
        assert worker.stop() == 0
    (failed,) = published["model-poison"]
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.stage, failed.error.reason) == ("inference", "model_error")
    assert "injected" not in failed.error.message  # no internal text reaches a client
    (record,) = letters["model-poison"]
    letter = DeadLetter.model_validate_json(record.value)
    assert (letter.reason, letter.stage) == ("model_error", "inference")
    assert letter.object_key  # the original is kept for a replay
    assert all(copy.status == "ok" for rid in good for copy in published[rid])
    log = worker.log_path.read_text(errors="replace")
    sizes = [int(n) for n in re.findall(r"inference failed for a batch of (\d+)", log)]
    assert sizes, "the model never failed on a batch"
    assert max(sizes) >= 2, "the poison image did not share a batch"


def _counted(log: str) -> list[str]:
    """The failure numbers a worker's log reports for the fused stage."""
    return re.findall(rf"{FUSED} failed on .* \(failure (\d) of 3\)", log)


async def _failures(settings: Settings) -> int:
    client = mongo.create_client(settings)
    try:
        collection = mongo.database(client, settings)[mongo.DELIVERY_ATTEMPTS]
        return sum([doc["failures"] async for doc in collection.find({})])
    finally:
        client.close()


async def test_a_poison_input_is_dead_lettered_after_3_failures_counted_across_a_crash(
    deployment: Settings, tmp_path: Path
) -> None:
    """Failures of one input are counted in MongoDB: a worker killed mid-way does not reset them,
    the input is dead-lettered after the third, and the inputs behind it go through."""
    names = TopicNames(deployment.topic_prefix)
    poison = scene_jpeg(1, 320) + PREPROCESS_POISON
    first = WorkerProcess(deployment, tmp_path, "w1", faulty=True)
    try:
        await publish(deployment, [("poison", poison, [("source-id", b"cam-p")], 0)])
        await eventually(lambda: _failures(deployment), 90, "a failure counted in MongoDB")
        # The count is stored before the failure is logged: wait for the line too.
        await eventually(
            lambda: _counted(first.log_path.read_text(errors="replace")), 30, "w1's log"
        )
    finally:
        first.kill()
    after = [f"after-{i}" for i in range(5)]
    await publish(deployment, [(rid, scene_jpeg(i, 320), [], 0) for i, rid in enumerate(after)])
    second = WorkerProcess(deployment, tmp_path, "w2", faulty=True)
    try:
        published = results(await collect(deployment, names.results, ["poison", *after], 120))
        letters = by_request_id(await collect(deployment, names.dlq, ["poison"], 30))
    finally:
        assert second.stop() == 0
    (failed,) = published["poison"]
    assert failed.status == "failed"
    assert failed.error is not None
    # The default worker runs every stage in one agent: it names that agent as the stage.
    assert (failed.error.stage, failed.error.reason) == (FUSED, "processing_error")
    assert "3 times" in failed.error.message
    assert "injected" not in failed.error.message
    (record,) = letters["poison"]
    letter = DeadLetter.model_validate_json(record.value)
    assert letter.reason == "processing_error"
    assert letter.object_key is not None
    assert letter.object_key.startswith("user-uploads/cam-p/")
    assert all(copy.status == "ok" for rid in after for copy in published[rid])
    logs = [w.log_path.read_text(errors="replace") for w in (first, second)]
    counted = [_counted(log) for log in logs]
    assert sorted(counted[0] + counted[1]) == ["1", "2", "3"], counted
    assert "1" not in counted[1], "the restarted worker counted from zero"
    assert await _failures(deployment) == 0  # forgotten once dead-lettered
