"""Pipeline benchmark: raw batched model throughput vs end-to-end throughput through the real
broker, worker and sinks, at the same batch and input size, in one run.

    python -m bench.pipeline [--images 300] [--workers 1,2]
    MUGPOS_MODEL=mugdet-synth:1.0.0 python -m bench.pipeline    # the 320 px model

Starts its own Apache Kafka 3.9 (from .cache/kafka-libs), secantusdb, redis-server and moto S3 on
loopback ports, runs `mugpos worker` processes, publishes generated JPEG scenes with aiokafka and
reads the results topic. Prints a table; the ratio is end-to-end img/s divided by raw img/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.services import real_services, settings_from_env
from control.console import worker_argv
from core.config import Settings
from core.models.letterbox import letterbox, to_batch
from core.synth.render import scene_jpegs
from infra.model_store import model_manager_from_settings, model_store_from_settings
from infra.provision import provision
from schemas.topics import TopicNames


def scenes(count: int, size: int) -> list[bytes]:
    return scene_jpegs(990_000, count, size)


async def raw_throughput(settings: Settings, images: list[bytes], batch: int) -> float:
    """The model alone: letterboxed batches through the same backend the worker uses."""
    from PIL import Image

    manager = model_manager_from_settings(settings, model_store_from_settings(settings, None))
    model = await manager.activate(settings.model)
    size = model.detector.input_size
    arrays = [
        letterbox(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), size)[0]
        for b in images[:batch]
    ]
    tensor = to_batch(arrays)
    model.detector.backend.infer(tensor)
    runs = max(3, 64 // batch)
    started = time.perf_counter()
    for _ in range(runs):
        model.detector.backend.infer(tensor)
    return runs * batch / (time.perf_counter() - started)


async def end_to_end(settings: Settings, images: list[bytes], count: int) -> dict[str, float]:
    topics = TopicNames(settings.topic_prefix)
    ids = [f"bench-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
    consumer = AIOKafkaConsumer(
        topics.results,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        group_id=None,
    )
    await consumer.start()
    await asyncio.sleep(1)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    for i, request_id in enumerate(ids):
        await producer.send(
            topics.images,
            images[i % len(images)],
            headers=[
                ("request-id", request_id.encode()),
                ("submitted-at", datetime.now(UTC).isoformat().encode()),
            ],
        )
    await producer.flush()
    latencies: dict[str, float] = {}
    wanted = set(ids)
    try:
        while not wanted <= set(latencies):
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    key = record.key.decode()
                    if key in wanted:
                        latencies[key] = orjson.loads(record.value)["latency_ms"]
            if time.perf_counter() - started > 900:
                raise TimeoutError(f"only {len(latencies)}/{count} results in 900 s")
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
    values = sorted(latencies.values())
    return {
        "img_s": count / elapsed,
        "p50": statistics.median(values),
        "p95": values[int(0.95 * (len(values) - 1))],
        "p99": values[int(0.99 * (len(values) - 1))],
    }


def start_worker(env: dict[str, str], folder: Path, name: str) -> subprocess.Popen:
    log = (folder / f"{name}.log").open("wb")
    return subprocess.Popen(
        worker_argv(folder / name),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
        start_new_session=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=640, help="source image size in px")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mugpos-bench-"))
    with real_services(folder) as service_env:
        base = {
            **service_env,
            "MUGPOS_MAX_BATCH": str(args.batch),
            "MUGPOS_TOPIC_PARTITIONS": "4",
            "MUGPOS_MODEL_CACHE_DIR": str(folder / "models"),
        }
        images = scenes(40, args.size)
        rows = []
        for workers in [int(w) for w in args.workers.split(",")]:
            prefix = f"bench{workers}"
            env = {
                **os.environ,
                **base,
                "MUGPOS_TOPIC_PREFIX": prefix,
                "MUGPOS_MONGODB_DB": prefix,
                "MUGPOS_S3_BUCKET": prefix,
            }
            settings = settings_from_env(env)
            asyncio.run(provision(settings))
            raw = asyncio.run(raw_throughput(settings, images, args.batch))
            procs = [start_worker(env, folder, f"{prefix}-w{i}") for i in range(workers)]
            try:
                asyncio.run(end_to_end(settings, images, 16))  # warm-up: joins, model loads
                result = asyncio.run(end_to_end(settings, images, args.images))
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.wait(timeout=60)
            rows.append((workers, raw, result))
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, no GPU), "
        f"batch {args.batch}, model {settings.model}, source {args.size} px, {args.images} images"
    )
    print(
        f"{'workers':>7} {'raw img/s':>10} {'e2e img/s':>10} {'ratio':>6} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    for workers, raw, result in rows:
        print(
            f"{workers:>7} {raw:>10.1f} {result['img_s']:>10.1f} {result['img_s'] / raw:>6.2f} "
            f"{result['p50']:>8.0f} {result['p95']:>8.0f} {result['p99']:>8.0f}"
        )


if __name__ == "__main__":
    main()
