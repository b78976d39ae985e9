"""`mugpos dlq list|replay` as a child process against a real worker, Kafka 3.9, secantusdb and
S3: a dead letter whose cause is fixed goes through the pipeline again under its request id."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from control.console import mugpos_argv
from core.config import Settings, settings_env
from infra import mongo
from infra.launchers import free_port
from infra.object_store import S3ObjectStore
from schemas.messages import IMAGE_REF_CONTENT_TYPE, AnalysisResult, DeadLetter, ImageRef
from schemas.topics import TopicNames
from tests.integration.workers import scene_jpeg

REF = ("content-type", IMAGE_REF_CONTENT_TYPE.encode())


async def _mugpos(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings_env(settings), "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run,
        mugpos_argv(*args),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _publish(settings: Settings, items: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for value, headers in items:
            await producer.send(TopicNames(settings.topic_prefix).images, value, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def _records(
    settings: Settings,
    topic: str,
    keep: Callable[[ConsumerRecord], bool],
    done: Callable[[list[ConsumerRecord]], bool],
    timeout_s: float,
) -> list[ConsumerRecord]:
    """Every record on `topic` that `keep` accepts, read from the start until `done` says so
    (a list, not a dict: one request id may have several records)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while not done(found) and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(r for r in records if keep(r))
    finally:
        await consumer.stop()
    assert done(found), f"not there on {topic} within {timeout_s:g} s: {found}"
    return found


def _keyed(request_id: str) -> Callable[[ConsumerRecord], bool]:
    return lambda record: record.key == request_id.encode()


def _replays_of(request_id: str) -> Callable[[ConsumerRecord], bool]:
    def keep(record: ConsumerRecord) -> bool:
        headers = dict(record.headers)
        return "replay-of" in headers and headers.get("request-id") == request_id.encode()

    return keep


def _statuses(records: list[ConsumerRecord]) -> list[str]:
    return [AnalysisResult.model_validate_json(r.value).status for r in records]


async def _documents(settings: Settings, request_id: str) -> int:
    client = mongo.create_client(settings)
    try:
        results = mongo.database(client, settings)[mongo.ANALYSIS_RESULTS]
        return await results.count_documents({"request_id": request_id})
    finally:
        client.close()


async def _audit(settings: Settings) -> list[dict]:
    client = mongo.create_client(settings)
    try:
        logs = mongo.database(client, settings)[mongo.ACTIVITY_LOGS]
        return await logs.find({"action": "dlq.replay"}).sort("timestamp", 1).to_list(None)
    finally:
        client.close()


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def test_a_letter_whose_cause_is_fixed_is_replayed_once(
    pipeline: Settings, tmp_path: Path
) -> None:
    names = TopicNames(pipeline.topic_prefix)
    rid, key = "late-object-1", "user-uploads/cam-dlq/late-object-1.jpg"
    await _publish(
        pipeline,
        [
            (
                ImageRef(image_ref=key).model_dump_json().encode(),
                [("request-id", rid.encode()), ("source-id", b"cam-dlq"), REF],
            )
        ],
    )
    # The object is not there yet: a bad_image_ref dead letter that names the missing key.
    letters = await _records(pipeline, names.dlq, _keyed(rid), bool, 60)
    letter = DeadLetter.model_validate_json(letters[0].value)
    assert (letter.reason, letter.object_key) == ("bad_image_ref", key)
    first = await _records(pipeline, names.results, _keyed(rid), bool, 30)
    assert _statuses(first) == ["rejected"]

    store = S3ObjectStore.from_settings(pipeline)  # the cause, fixed
    try:
        await store.put(key, scene_jpeg(7), content_type="image/jpeg")
    finally:
        await store.close()

    listed = await _mugpos(pipeline, tmp_path, "dlq", "list", "--reason", "bad_image_ref", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = _json_lines(listed.stdout)
    position = f"dlq:{letters[0].partition}:{letters[0].offset}"
    assert (entry["request_id"], entry["position"], entry["object_key"]) == (rid, position, key)
    assert (entry["replayable"], entry["why_not"], entry["replays"]) == (True, None, 0)
    assert "bad_image_ref 1" in listed.stderr

    replayed = await _mugpos(pipeline, tmp_path, "dlq", "replay", "--reason", "bad_image_ref")
    assert replayed.returncode == 0, replayed.stderr
    assert "1 replayed, 0 skipped (already replayed), 0 not replayable" in replayed.stdout

    # A new `ok` result under the same request id, after the `rejected` one.
    results = await _records(
        pipeline, names.results, _keyed(rid), lambda found: "ok" in _statuses(found), 60
    )
    assert _statuses(results)[0] == "rejected"
    assert AnalysisResult.model_validate_json(results[-1].value).image.object_key == key
    (sent,) = await _records(pipeline, names.images, _replays_of(rid), bool, 10)
    headers = dict(sent.headers)
    assert headers["replay-of"] == position.encode()
    assert headers["source-id"] == b"cam-dlq"
    assert headers["content-type"] == IMAGE_REF_CONTENT_TYPE.encode()
    assert ImageRef.model_validate_json(sent.value).image_ref == key

    assert await _documents(pipeline, rid) == 1
    audit = await _audit(pipeline)
    assert [(a["resource"], a["detail"]["dlq"], a["detail"]["reason"]) for a in audit] == [
        (rid, position, "bad_image_ref")
    ]
    assert audit[0]["user_id"]
    assert audit[0]["detail"]["again"] is False

    again = await _mugpos(pipeline, tmp_path, "dlq", "replay", "--reason", "bad_image_ref")
    assert again.returncode == 0, again.stderr
    assert "0 replayed, 1 skipped (already replayed), 0 not replayable" in again.stdout

    forced = await _mugpos(
        pipeline, tmp_path, "dlq", "replay", "--reason", "bad_image_ref", "--again", "--as", "ops"
    )
    assert forced.returncode == 0, forced.stderr
    assert "1 replayed, 0 skipped" in forced.stdout
    await _records(pipeline, names.images, _replays_of(rid), lambda found: len(found) == 2, 10)
    assert [(a["user_id"], a["detail"]["again"]) for a in await _audit(pipeline)][1:] == [
        ("ops", True)
    ]
    relisted = await _mugpos(pipeline, tmp_path, "dlq", "list", "--json")
    assert [(e["request_id"], e["replays"]) for e in _json_lines(relisted.stdout)] == [(rid, 2)]


async def test_letters_without_their_bytes_are_reported_not_replayed(
    pipeline: Settings, tmp_path: Path
) -> None:
    names = TopicNames(pipeline.topic_prefix)
    gone = "user-uploads/cam-dlq/never-there.jpg"
    await _publish(
        pipeline,
        [
            (b"", [("request-id", b"empty-1")]),
            (ImageRef(image_ref=gone).model_dump_json().encode(), [("request-id", b"gone-1"), REF]),
        ],
    )
    ids = {b"empty-1", b"gone-1"}
    await _records(pipeline, names.dlq, lambda r: r.key in ids, lambda found: len(found) == 2, 60)

    listed = await _mugpos(pipeline, tmp_path, "dlq", "list", "--json", "--since", "10m")
    assert listed.returncode == 0, listed.stderr
    entries = {e["request_id"]: e for e in _json_lines(listed.stdout)}
    assert entries["empty-1"]["reason"] == "empty_input"
    assert entries["empty-1"]["replayable"] is False
    assert "not kept" in entries["empty-1"]["why_not"]
    assert entries["gone-1"]["replayable"] is False
    assert entries["gone-1"]["why_not"] == f"object {gone} no longer exists"
    table = await _mugpos(pipeline, tmp_path, "dlq", "list", "--stage", "preprocess")
    assert table.returncode == 0, table.stderr
    assert "empty-1" in table.stdout
    assert "gone-1" in table.stdout
    assert "bad_image_ref 1, empty_input 1; 0 replayable" in table.stdout

    replayed = await _mugpos(pipeline, tmp_path, "dlq", "replay")
    assert replayed.returncode == 0, replayed.stderr
    assert "0 replayed, 0 skipped (already replayed), 2 not replayable" in replayed.stdout
    assert "Traceback" not in replayed.stdout + replayed.stderr
    nothing = await _mugpos(pipeline, tmp_path, "dlq", "list", "--reason", "too_large")
    assert nothing.returncode == 0
    assert "no dead letters match" in nothing.stdout


async def test_bad_arguments_exit_2_and_an_unreachable_broker_exits_1(
    service_settings: Settings, tmp_path: Path
) -> None:
    for command in ("list", "replay"):
        bad = await _mugpos(service_settings, tmp_path, "dlq", command, "--since", "yesterday")
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "--since" in bad.stderr
        assert "ISO-8601" in bad.stderr

    down = service_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    for command in ("list", "replay"):
        result = await _mugpos(down, tmp_path, "dlq", command)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"cannot read {TopicNames(down.topic_prefix).dlq} from Kafka" in result.stderr
        assert "Traceback" not in result.stderr
