"""The Kafka broker down for 20 s mid-stream: nothing lost, and the worker waits quietly.

The test runs a broker of its own (the session's is shared by every other test), starts a real
worker on a stream of images, stops the broker (SIGTERM) once results flow and starts it again on
the same port and data after 20 s. Every request id must end with a result on the results topic
and exactly one MongoDB document; while the broker is away the worker must keep running, write
only a few log lines (aiokafka logs an ERROR per retry: thousands without the throttle) and stay
near idle (a producer holding batches spun a full core without the reconnect backoff).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from infra.launchers import KafkaBroker, MotoS3Server, RedisServer, SecantusServer
from infra.provision import provision
from schemas.topics import TopicNames
from tests.conftest import settings_for
from tests.integration.kafka_io import collect, publish, results, stored_documents
from tests.integration.workers import WorkerProcess, scene_jpeg

IMAGES = 200
DOWN_S = 20.0
MAX_OUTAGE_LINES = 100  # measured: ~4,000 over such an outage unthrottled, 3 to 5 throttled
MAX_OUTAGE_CPU = 0.2  # CPU seconds per second; measured 0.03 with backoff, up to 1.0 without
# The 320 px detector: four times cheaper on CPU, so the test stays short.
FAST = {"MUGPOS_MODEL": "mugdet-synth:1.0.0"}


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker only this test uses, so stopping it disturbs no other test."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-outage"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def test_the_broker_down_for_20_s_loses_nothing_and_the_worker_waits_quietly(
    own_broker: KafkaBroker,
    mongo_server: SecantusServer,
    redis_server: RedisServer,
    s3_server: MotoS3Server,
    unique_name: str,
    tmp_path: Path,
) -> None:
    settings = settings_for(unique_name, own_broker, mongo_server, redis_server, s3_server)
    await provision(settings)
    topic = TopicNames(settings.topic_prefix).results
    ids = [f"img-{i:03d}" for i in range(IMAGES)]
    scenes = [scene_jpeg(i, 320) for i in range(20)]
    await publish(settings, [(rid, scenes[i % 20], []) for i, rid in enumerate(ids)])

    worker = WorkerProcess(settings, tmp_path, "worker", FAST)
    try:
        early = await collect(settings, topic, ids, 120, any_of=True, to_end=False)
        process = psutil.Process(worker.process.pid)
        lines, cpu, started = _lines(worker.log_path), _cpu_s(process), time.monotonic()
        await asyncio.to_thread(own_broker.stop)
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(own_broker.restart, 60)
        outage_s = time.monotonic() - started
        outage_lines = _lines(worker.log_path) - lines
        outage_cpu = _cpu_s(process) - cpu
        records = await collect(settings, topic, ids, 120)
        assert worker.process.poll() is None, "the worker exited during the outage"
        stored = await stored_documents(settings, ids)
    finally:
        exit_code = worker.stop()

    print(
        f"outage {outage_s:.1f} s with {len({r.request_id for r in early})} of {IMAGES} done: "
        f"{outage_lines} log lines, {outage_cpu:.2f} CPU s"
    )
    assert len({r.request_id for r in early}) < IMAGES, "the stream was over before the outage"
    published = results(records)
    assert sorted(published) == ids  # every request id has a result: 0 lost
    assert all(copies[-1].status == "ok" for copies in published.values())
    assert {rid: len(docs) for rid, docs in stored.items() if len(docs) != 1} == {}
    assert sorted(stored) == ids
    assert outage_lines < MAX_OUTAGE_LINES, worker.log_path.read_text(errors="replace")[-3000:]
    assert outage_cpu < MAX_OUTAGE_CPU * outage_s
    assert exit_code == 0
