"""The stream pipeline end to end: a real `mugpos worker` process against the real Kafka 3.9
broker, secantusdb, Redis and S3 from the harness; inputs published with plain aiokafka."""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from PIL import Image

from core.config import Settings
from infra import mongo
from infra.object_store import S3ObjectStore
from schemas.messages import AnalysisResult, DeadLetter
from schemas.topics import TopicNames
from tests.integration.workers import WorkerProcess, scene_jpeg
from tests.unit.test_image_decode import RGB, encode, png_bomb

REF = [("content-type", b"application/vnd.mugpos.image-ref+json")]


def noise_png(width: int, height: int) -> bytes:
    """An incompressible PNG of about width x height x 3 bytes."""
    return encode(
        Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)),
        "PNG",
        compress_level=0,
    )


async def _publish(settings: Settings, items: list[tuple[str, bytes, list]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=4_000_000
    )
    await producer.start()
    try:
        for request_id, value, headers in items:
            await producer.send(
                TopicNames(settings.topic_prefix).images,
                value,
                headers=[("request-id", request_id.encode()), *headers],
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _collect(
    settings: Settings,
    topic: str,
    expected: set[str],
    timeout_s: float,
    *,
    require_all: bool = True,
) -> dict:
    """Messages on `topic` keyed by request id, until every expected id (or, without
    `require_all`, any one of them) has arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,  # no group: every call reads the topic from the start
    )
    await consumer.start()
    found: dict[str, bytes] = {}
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while asyncio.get_running_loop().time() < deadline:
            if expected <= set(found) or (not require_all and expected & set(found)):
                break
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    found[record.key.decode()] = record.value
    finally:
        await consumer.stop()
    missing = sorted(expected - set(found))
    if require_all:
        assert not missing, f"no message on {topic} within {timeout_s:g} s for {missing[:20]}"
    else:
        assert expected & set(found), f"no message on {topic} within {timeout_s:g} s"
    return found


async def test_200_images_become_200_results_and_documents(pipeline: Settings) -> None:
    scenes = [scene_jpeg(i) for i in range(20)]
    ids = [f"img-{i:03d}" for i in range(200)]
    await _publish(
        pipeline, [(rid, scenes[i % 20], [("source-id", b"cam-a")]) for i, rid in enumerate(ids)]
    )
    results = await _collect(pipeline, TopicNames(pipeline.topic_prefix).results, set(ids), 240)
    assert set(results) == set(ids)
    parsed = [AnalysisResult.model_validate_json(v) for v in results.values()]
    assert {r.status for r in parsed} == {"ok"}
    assert all(r.model and r.model.name == "mugdet-synth" for r in parsed)
    assert all(r.positioning is not None and r.rule_set_version for r in parsed)
    assert {"preprocess", "inference", "analysis", "sink"} <= set(parsed[0].timings_ms)
    client = mongo.create_client(pipeline)
    try:
        stored = await mongo.database(client, pipeline)[mongo.ANALYSIS_RESULTS].count_documents(
            {"request_id": {"$in": ids}}
        )
    finally:
        client.close()
    assert stored == 200
    store = S3ObjectStore.from_settings(pipeline)
    try:
        originals = await store.list("user-uploads/cam-a/")
    finally:
        await store.close()
    assert len(originals) == 200


def _bad_corpus() -> list[tuple[str, bytes, list, str]]:
    grey16 = Image.frombytes("I;16", (64, 64), os.urandom(64 * 64 * 2))
    return [
        ("bad-truncated", scene_jpeg(1)[:500], [], "truncated_image"),
        ("bad-empty", b"", [], "empty_input"),
        ("bad-text", b"just some text, not an image\n" * 20, [], "unsupported_format"),
        ("bad-bomb", png_bomb(100_000, 100_000), [], "too_many_pixels"),
        ("bad-gif", encode(RGB, "GIF"), [], "unsupported_format"),
        ("bad-big", orjson.dumps({"image_ref": "user-uploads/test/huge.png"}), REF, "too_large"),
        ("ok-claim-check", orjson.dumps({"image_ref": "user-uploads/test/large.png"}), REF, "ok"),
        ("bad-options", scene_jpeg(2), [("options", b"{nope")], "bad_headers"),
        (
            "bad-ref",
            orjson.dumps({"image_ref": "user-uploads/none/missing.jpg"}),
            REF,
            "bad_image_ref",
        ),
        # Awkward but valid inputs are processed, whatever the headers claim.
        ("ok-16bit", encode(grey16, "PNG"), [], "ok"),
        ("ok-cmyk", encode(RGB.convert("CMYK"), "JPEG"), [], "ok"),
        ("ok-lying-header", encode(RGB, "PNG"), [("content-type", b"image/jpeg")], "ok"),
    ]


async def test_bad_inputs_become_dead_letters_and_the_worker_keeps_going(
    pipeline: Settings,
) -> None:
    store = S3ObjectStore.from_settings(pipeline)
    try:
        # Images over the broker's message limit travel by claim check (object key in the message).
        await store.put("user-uploads/test/huge.png", noise_png(1100, 1000))  # ~3.3 MB: too large
        await store.put("user-uploads/test/large.png", noise_png(800, 600))  # ~1.4 MB: accepted
    finally:
        await store.close()
    corpus = _bad_corpus()
    await _publish(pipeline, [(rid, value, headers) for rid, value, headers, _ in corpus])
    names = TopicNames(pipeline.topic_prefix)
    every = {rid for rid, *_ in corpus}
    rejected = {rid for rid, *_, reason in corpus if reason != "ok"}
    results = await _collect(pipeline, names.results, every, 180)
    letters = await _collect(pipeline, names.dlq, rejected, 60)
    for rid, _, _, reason in corpus:
        result = AnalysisResult.model_validate_json(results[rid])
        if reason == "ok":
            assert result.status == "ok", rid
            if rid == "ok-claim-check":
                assert result.image is not None
                assert result.image.object_key == "user-uploads/test/large.png"
                assert result.image.size_bytes > 1_048_576
            continue
        assert result.status == "rejected", rid
        assert result.error is not None
        assert result.error.reason == reason, (rid, result.error.message)
        letter = DeadLetter.model_validate_json(letters[rid])
        assert (letter.reason, letter.stage, letter.original_topic) == (
            reason,
            "preprocess",
            names.images,
        )
    # Later good images still succeed.
    await _publish(pipeline, [("after-bad", scene_jpeg(3), [])])
    after = await _collect(pipeline, names.results, {"after-bad"}, 60)
    assert AnalysisResult.model_validate_json(after["after-bad"]).status == "ok"


async def test_a_stage_message_over_the_topic_limit_becomes_a_dead_letter(
    deployment: Settings, tmp_path: Path
) -> None:
    """A stage topic with a smaller message limit (declared before this release raised it, say)
    refuses a prepared image: that input becomes a `too_large` dead letter, the worker goes on."""
    names = TopicNames(deployment.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.kafka_bootstrap)
    await admin.start()
    try:
        limit = ConfigResource(
            ConfigResourceType.TOPIC, names.prepared, configs={"max.message.bytes": "20000"}
        )
        await admin.alter_configs([limit])
    finally:
        await admin.close()
    plain = encode(Image.new("RGB", (64, 48), (180, 150, 120)), "JPEG")  # a tiny stage message
    worker = WorkerProcess(deployment, tmp_path, "w")
    try:
        await _publish(deployment, [("over-limit", scene_jpeg(1), []), ("plain", plain, [])])
        results = await _collect(deployment, names.results, {"over-limit", "plain"}, 120)
        letters = await _collect(deployment, names.dlq, {"over-limit"}, 30)
    finally:
        assert worker.stop() == 0  # still running until told to stop
    over = AnalysisResult.model_validate_json(results["over-limit"])
    assert over.status == "rejected"
    assert over.error is not None
    assert over.error.reason == "too_large"
    assert "max.message.bytes" in over.error.message
    assert DeadLetter.model_validate_json(letters["over-limit"]).reason == "too_large"
    assert AnalysisResult.model_validate_json(results["plain"]).status == "ok"


async def _stored(settings: Settings, ids: list[str]) -> dict[str, dict]:
    client = mongo.create_client(settings)
    try:
        cursor = mongo.database(client, settings)[mongo.ANALYSIS_RESULTS].find(
            {"request_id": {"$in": ids}}, {"request_id": 1, "completed_at": 1, "status": 1}
        )
        return {doc["request_id"]: doc async for doc in cursor}
    finally:
        client.close()


async def test_kill_9_of_one_of_two_workers_loses_nothing(
    deployment: Settings, tmp_path: Path
) -> None:
    """Two workers split the partitions; one dies mid-stream; every input ends as exactly one
    stored result (duplicates are absorbed by the idempotent sink)."""
    first = WorkerProcess(deployment, tmp_path, "w1")
    second = WorkerProcess(deployment, tmp_path, "w2")
    try:
        scenes = [scene_jpeg(i, 320) for i in range(25)]
        ids = [f"k9-{i:03d}" for i in range(500)]
        await _publish(deployment, [(rid, scenes[i % 25], []) for i, rid in enumerate(ids)])
        names = TopicNames(deployment.topic_prefix)
        await _collect(deployment, names.results, set(ids[:40]), 120, require_all=False)
        first.kill()  # mid-stream: results have started, most inputs are still queued
        results = await _collect(deployment, names.results, set(ids), 300)
    finally:
        first.stop()
        second.stop()
    assert set(results) == set(ids)
    stored = await _stored(deployment, ids)
    assert len(stored) == 500  # one document per request id: nothing missing, nothing twice
    assert {doc["status"] for doc in stored.values()} == {"ok"}


async def test_a_restarted_worker_resumes_from_committed_offsets(
    deployment: Settings, tmp_path: Path
) -> None:
    scenes = [scene_jpeg(i, 320) for i in range(10)]
    names = TopicNames(deployment.topic_prefix)
    before = [f"rs-a-{i:02d}" for i in range(30)]
    worker = WorkerProcess(deployment, tmp_path, "w1")
    try:
        await _publish(deployment, [(rid, scenes[i % 10], []) for i, rid in enumerate(before)])
        await _collect(deployment, names.results, set(before), 180)
        await asyncio.sleep(3)  # past the commit interval
    finally:
        assert worker.stop() == 0  # SIGTERM: drained, committed, clean exit
    first_pass = await _stored(deployment, before)
    after = [f"rs-b-{i:02d}" for i in range(30)]
    await _publish(deployment, [(rid, scenes[i % 10], []) for i, rid in enumerate(after)])
    restarted = WorkerProcess(deployment, tmp_path, "w2")
    try:
        await _collect(deployment, names.results, set(after), 180)
    finally:
        restarted.stop()
    again = await _stored(deployment, before)
    # Committed inputs were not processed again: their stored results are untouched.
    assert {rid: doc["completed_at"] for rid, doc in again.items()} == {
        rid: doc["completed_at"] for rid, doc in first_pass.items()
    }
    assert len(await _stored(deployment, after)) == 30


class _KafkaProducer:
    """aiokafka's producer behind the (topic, key, value, ...) call Faust's producer offers."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send_and_wait(self, topic, key, value, partition, timestamp, headers):
        return await self._producer.send_and_wait(topic, value, key=key)


async def test_event_loop_stays_responsive_while_a_batch_runs(deployment: Settings) -> None:
    """The inference stage runs the model on its own thread: the loop keeps ticking meanwhile."""
    import base64

    from agents.stages import infer
    from core.pipeline.prepare import prepare
    from schemas.stages import PreparedImage
    from streams.context import PipelineContext

    ctx = PipelineContext.open(deployment)
    await ctx.start(with_model=True)
    producer = AIOKafkaProducer(bootstrap_servers=deployment.kafka_bootstrap)
    await producer.start()
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    try:
        messages = []
        for i in range(8):
            prepared = prepare(scene_jpeg(i, 640), ctx.input_size)
            messages.append(
                PreparedImage(
                    request_id=f"lag-{i}",
                    source_id="cam",
                    received_at=datetime.now(UTC),
                    image={
                        "width": 640,
                        "height": 640,
                        "format": "jpeg",
                        "sha256": "0" * 64,
                        "size_bytes": 1,
                        "object_key": None,
                    },
                    letterbox=asdict(prepared.box),
                    origin={"topic": "t", "partition": 0, "offset": i},
                    model_input_png=base64.b64encode(prepared.model_input_png).decode(),
                )
                .model_dump_json()
                .encode()
            )
        await infer(ctx, _KafkaProducer(producer), messages)  # warm-up
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        lags.clear()
        started = loop.time()
        for _ in range(3):
            await infer(ctx, _KafkaProducer(producer), messages)
        took = loop.time() - started
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
    finally:
        await producer.stop()
        await ctx.stop()
    print(f"3 batches of 8 took {took * 1000:.0f} ms; worst loop lag {max(lags) * 1000:.1f} ms")
    assert len(lags) > 20  # the loop ran while the model did
    assert max(lags) < 0.1 * took / 3  # under a tenth of one batch's model time
