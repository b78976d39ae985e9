"""Kafka producer and a topic follower for processes outside the Faust pipeline (the API)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.config import Settings
from infra.kafka_admin import KafkaAdmin
from infra.kafka_backoff import install_reconnect_backoff
from infra.kafka_security import kafka_client_kwargs

log = logging.getLogger(__name__)


def create_producer(settings: Settings, client_id: str | None = None) -> AIOKafkaProducer:
    """acks=all: an acknowledged enqueue is on the broker. Not the idempotent producer, which
    tansu (the embedded demo's broker) refuses; a retried send that lands twice is absorbed by
    the sink, which keeps one result per request id. `client_id` names the process in the
    broker's logs and quotas (default: the API's)."""
    install_reconnect_backoff()
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=0,
        client_id=client_id or f"{settings.topic_prefix}-api",
        **kafka_client_kwargs(settings),
    )


class TopicFollower:
    """Reads every partition of one topic from its end onwards, without a consumer group, so each
    API process sees every message (to complete its own waiting requests) and commits nothing."""

    def __init__(
        self, settings: Settings, topic: str, handle: Callable[[bytes, bytes], Awaitable[None]]
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._handle = handle
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Returns once positioned at the end of every partition: later messages are all seen."""
        install_reconnect_backoff()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            client_id=f"{self._settings.topic_prefix}-api-follower",
            **kafka_client_kwargs(self._settings),
        )
        admin = KafkaAdmin(self._settings)
        try:
            count = (await admin.partitions([self._topic])).get(self._topic)
        finally:
            await admin.close()
        if not count:
            raise RuntimeError(f"topic {self._topic} does not exist; run `mugpos setup` first")
        await consumer.start()
        assigned = [TopicPartition(self._topic, p) for p in range(count)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve the positions now, not lazily at the first fetch
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"follow-{self._topic}")

    async def _run(self) -> None:
        assert self._consumer is not None
        async for message in self._consumer:
            try:
                await self._handle(message.key or b"", message.value or b"")
            except Exception:  # one bad message must not stop the follower
                log.exception("could not handle a message from %s", self._topic)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
