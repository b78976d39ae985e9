"""The stream pipeline end to end: a real `mugpos worker` process against the real Kafka 3.9
broker, secantusdb, Redis and S3 from the harness; inputs published with plain aiokafka."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from core.config import Settings
from core.synth import render_scene, sample_scene
from infra import mongo
from infra.object_store import S3ObjectStore
from infra.provision import provision
from schemas.messages import AnalysisResult, DeadLetter
from schemas.topics import TopicNames
from tests.integration.test_health_and_cli import _env
from tests.unit.test_image_decode import RGB, encode, png_bomb

MAX_IMAGE_BYTES = 3_000_000  # above the broker's 1 MB message limit: big images use the claim check
REF = [("content-type", b"application/vnd.mugpos.image-ref+json")]


def noise_png(width: int, height: int) -> bytes:
    """An incompressible PNG of about width x height x 3 bytes."""
    return encode(
        Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)),
        "PNG",
        compress_level=0,
    )


def scene_jpeg(seed: int, size: int = 480) -> bytes:
    image, _ = render_scene(sample_scene(600_000 + seed, size), size)
    return encode(image, "JPEG", quality=90)


@pytest.fixture
def pipeline(service_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A provisioned deployment and one worker process running every stage."""
    asyncio.run(provision(service_settings))
    env = {
        **os.environ,
        **_env(service_settings),
        "MUGPOS_TOPIC_PARTITIONS": "3",
        "MUGPOS_MAX_BATCH": "8",
        "MUGPOS_MAX_WAIT_MS": "50",
        "MUGPOS_DEVICE": "cpu",
        "MUGPOS_MODEL_CACHE_DIR": str(tmp_path / "models"),
        "MUGPOS_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
    }
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control.cli",
            "worker",
            "--datadir",
            str(tmp_path / "faust"),
            "--loglevel",
            "WARNING",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        yield service_settings
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        print((tmp_path / "worker.log").read_text(errors="replace")[-4000:])


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


async def _collect(settings: Settings, topic: str, expected: set[str], timeout_s: float) -> dict:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"test-{topic}",
    )
    await consumer.start()
    found: dict[str, bytes] = {}
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while not expected <= set(found) and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    found[record.key.decode()] = record.value
    finally:
        await consumer.stop()
    missing = sorted(expected - set(found))
    assert not missing, f"no message on {topic} within {timeout_s:g} s for {missing}"
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
