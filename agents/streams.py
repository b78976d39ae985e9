"""The streams service (`mugpos streams run`): reads every camera stream managed through the API
(`PUT /api/v1/sources/{id}/stream`, stored in `source_streams`) and publishes sampled frames to
`{prefix}.images.v1`, as `mugpos ingest` does for one stream (infra.capture.service says how).

One process, one Kafka producer for every stream. Run ONE replica: each replica would read every
stream and send each frame twice. SIGTERM or SIGINT stop it: reading stops, what was sampled is
sent (each stream waits up to 10 s for its acknowledgements), every stream's health is written
`stopped`. With MUGPOS_WORKER_HTTP_PORT it serves /healthz, /readyz and /metrics like a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from agents.probes import standalone
from core.config import Settings
from infra import mongo
from infra.capture.runner import PRODUCER_STOP_S, check_topic
from infra.capture.service import StreamService
from infra.kafka_clients import create_producer
from infra.streams_store import StreamsStore
from schemas.topics import TopicNames

log = logging.getLogger(__name__)
TOPIC_RETRY_S = 5.0


def service_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def _wait_for_topic(settings: Settings, topic: str, stop: asyncio.Event) -> bool:
    """Until the images topic exists (`mugpos setup` may still be running); False if stopped."""
    warned = False
    while not stop.is_set():
        try:
            await check_topic(settings, topic)
            return True
        except Exception as exc:
            if not warned:
                log.warning("streams: %s; trying again every %g s", exc, TOPIC_RETRY_S)
                warned = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TOPIC_RETRY_S)
    return False


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the streams service until SIGTERM/SIGINT (or until `stop` is set, when given)."""
    topic = TopicNames(settings.topic_prefix).images
    client = mongo.create_client(settings)
    db = mongo.database(client, settings)
    producer = create_producer(settings, client_id=f"{settings.topic_prefix}-streams")
    service = StreamService(StreamsStore(db), producer, topic, service_id())
    started = False
    async with standalone(settings, stop, lambda: dict(service.unavailable)) as shell:
        try:
            await mongo.ensure_indexes(db)
            if not await _wait_for_topic(settings, topic, shell.stop):
                return
            await producer.start()
            started = True
            shell.state = "running"
            log.info("streams: %s serving the streams in MongoDB to %s", service.service_id, topic)
            await service.run(shell.stop)
        finally:
            shell.state = "stopping"
            if started:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PRODUCER_STOP_S):
                        await producer.stop()
            client.close()
            log.info("streams: stopped")
