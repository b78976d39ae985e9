"""The webhook dispatcher (`mugpos webhooks run`): reads alert events from `{prefix}.alerts.v2`
in its own consumer group and POSTs each to the endpoints it names, signed.

Outside the analysis stage on purpose: a slow or dead receiver holds no image, and dispatchers
scale on their own. Per partition the events go out in order (a source's `raised` before its
`resolved`); partitions are delivered side by side.

- Each try is logged in `webhook_deliveries`; an event's delivery already settled (a frame
  redelivered upstream republishes its events under the same ids) is not posted again.
- A try with no answer, a 5xx, 408 or 429 is retried with exponential back-off and jitter
  (stamina) up to MUGPOS_WEBHOOK_ATTEMPTS; then, or at once for any other answer, the delivery is
  dead-lettered on `{prefix}.dlq.v1` (stage `webhooks`) and logged `dead_lettered`. A target the
  SSRF guard refuses is dead-lettered as `webhook_target_refused` and logged `refused`.
- MongoDB or Kafka down: the partition is sought back to the event and tried again after a
  pause; nothing is committed past an event whose deliveries are not settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import stamina
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter
from pydantic import ValidationError

from agents.probes import standalone
from core.config import Settings
from core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, body_of, sign
from infra import mongo
from infra.failures import unavailable_dependency
from infra.kafka_backoff import install_reconnect_backoff
from infra.kafka_clients import create_producer
from infra.kafka_security import kafka_client_kwargs
from infra.webhook_client import TargetRefused, WebhookClient
from infra.webhooks_store import SecretsUnavailable, WebhookDeliveries, WebhookEndpoints
from schemas.messages import Alert, DeadLetter
from schemas.topics import TopicNames

log = logging.getLogger(__name__)

STAGE = "webhooks"
MAX_BACKOFF_S = 60.0
OUTAGE_PAUSE_S = 5.0
DELIVERIES = Counter(
    "mugpos_webhook_deliveries",
    "Webhook deliveries settled, by endpoint and outcome.",
    ["endpoint", "outcome"],
)
ATTEMPTS = Counter(
    "mugpos_webhook_attempts",
    "Webhook requests sent, by endpoint and answer.",
    ["endpoint", "answer"],
)


class _TryAgain(Exception):
    """An answer worth another try (its text is the delivery log's last error)."""


class _Unsettled(Exception):
    """A dependency the dispatcher needs is down: the event is tried again later."""

    def __init__(self, dependency: str) -> None:
        super().__init__(dependency)
        self.dependency = dependency


@dataclass(slots=True)
class Dispatcher:
    settings: Settings
    endpoints: WebhookEndpoints
    deliveries: WebhookDeliveries
    client: WebhookClient
    producer: AIOKafkaProducer
    topics: TopicNames
    unavailable: dict[str, float] = field(default_factory=dict)

    async def handle(self, record: ConsumerRecord) -> None:
        """Settle every delivery of one event. Raises _Unsettled when a dependency is down."""
        try:
            alert = Alert.model_validate_json(record.value or b"")
        except ValidationError:
            log.error(
                "%s:%d@%d is no alert event (schema v2); skipped",
                record.topic,
                record.partition,
                record.offset,
            )
            return
        payload = alert.model_dump(mode="json")
        try:
            await asyncio.gather(*(self._settle(record, payload, n) for n in alert.webhooks))
        except (_Unsettled, SecretsUnavailable):
            raise
        except Exception as exc:  # giving up needs Kafka and MongoDB too
            dependency = unavailable_dependency(exc)
            if dependency is None:
                raise
            raise _Unsettled(dependency) from exc

    async def _settle(self, record: ConsumerRecord, alert: dict[str, Any], name: str) -> None:
        try:
            await self._deliver(record, alert, name)
        except SecretsUnavailable:
            raise  # the wrong MUGPOS_ENCRYPTION_KEY: stop, nothing is committed
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is not None:
                raise _Unsettled(dependency) from exc
            log.exception("webhook %s: delivering %s failed", name, alert["alert_id"])
            delivery_id = f"{alert['alert_id']}:{name}"
            await self._give_up(
                record,
                alert,
                name,
                delivery_id,
                "dead_lettered",
                "webhook_failed",
                "internal error",
            )

    async def _deliver(self, record: ConsumerRecord, alert: dict[str, Any], name: str) -> None:
        entry = await self.deliveries.open(alert, name)
        if entry["status"] != "pending":
            return  # settled before: this event was read again
        delivery_id = entry["_id"]
        target = await self.endpoints.with_secret(name)
        if target is None or not target[0].enabled:
            why = f"no webhook endpoint named {name!r}" if target is None else "endpoint disabled"
            await self._give_up(record, alert, name, delivery_id, "refused", "webhook_refused", why)
            return
        endpoint, secret = target
        body = orjson.dumps(body_of(alert, endpoint.format))
        headers = {
            "X-Mugpos-Alert-Id": alert["alert_id"],
            "X-Mugpos-Event": alert["event"],
            "X-Mugpos-Delivery": delivery_id,
        }
        backoff = self.settings.webhook_backoff_s
        try:
            async for attempt in stamina.retry_context(
                on=_TryAgain,
                attempts=self.settings.webhook_attempts,
                timeout=None,
                wait_initial=backoff,
                wait_max=MAX_BACKOFF_S,
                wait_jitter=backoff,
                wait_exp_base=2,
            ):
                with attempt:
                    stamp = int(time.time())
                    signed = headers | {
                        TIMESTAMP_HEADER: str(stamp),
                        SIGNATURE_HEADER: sign(secret, stamp, body),
                    }
                    answer = await self.client.post(endpoint.url, body, signed)
                    ATTEMPTS.labels(name, str(answer.status or "none")).inc()
                    await self.deliveries.attempted(
                        delivery_id, endpoint.url, answer.status, answer.error
                    )
                    if answer.ok:
                        await self.deliveries.finish(delivery_id, "delivered")
                        DELIVERIES.labels(name, "delivered").inc()
                        return
                    if answer.retryable:
                        raise _TryAgain(answer.error)
                    why = f"{answer.error}: the receiver refused it (not retried)"
                    await self._give_up(
                        record, alert, name, delivery_id, "dead_lettered", "webhook_rejected", why
                    )
                    return
        except _TryAgain as exc:
            why = f"{exc} after {self.settings.webhook_attempts} tries"
            await self._give_up(
                record, alert, name, delivery_id, "dead_lettered", "webhook_undeliverable", why
            )
        except TargetRefused as exc:
            await self.deliveries.attempted(delivery_id, endpoint.url, None, str(exc))
            await self._give_up(
                record, alert, name, delivery_id, "refused", "webhook_target_refused", str(exc)
            )

    async def _give_up(
        self,
        record: ConsumerRecord,
        alert: dict[str, Any],
        name: str,
        delivery_id: str,
        status: str,
        reason: str,
        why: str,
    ) -> None:
        """Dead-letter the delivery (published first: a crash in between redoes both)."""
        letter = DeadLetter(
            request_id=alert["request_id"],
            stage=STAGE,
            reason=reason,
            message=f"webhook {name!r}, alert {alert['alert_id']} ({alert['event']}): {why}",
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_key=record.key.decode(errors="replace") if record.key else None,
            original_headers={"webhook-endpoint": name, "delivery-id": delivery_id},
            failed_at=datetime.now(UTC),
        )
        await self.producer.send_and_wait(
            self.topics.dlq, letter.model_dump_json().encode(), key=record.key
        )
        await self.deliveries.finish(delivery_id, status, why)  # type: ignore[arg-type]
        DELIVERIES.labels(name, status).inc()
        log.warning("webhook %s: %s dead-lettered (%s): %s", name, alert["alert_id"], reason, why)

    async def run_batch(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> bool:
        """Deliver a fetched batch, partitions side by side, and commit what settled; False when
        a dependency stopped a partition (it is sought back to its unsettled event)."""
        settled = await asyncio.gather(*(self._partition(tp, rs) for tp, rs in batch.items()))
        done = {tp: offset for tp, offset in settled if offset is not None}
        stopped = {tp for tp, _ in settled} - {
            tp for tp, offset in settled if offset == batch[tp][-1].offset + 1
        }
        for tp in stopped:
            consumer.seek(tp, done.get(tp, batch[tp][0].offset))
        if done:
            await consumer.commit(done)
        if not stopped and self.unavailable:
            log.warning("webhooks: %s back; delivering", ", ".join(self.unavailable))
            self.unavailable.clear()
        return not stopped

    async def _partition(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> tuple[TopicPartition, int | None]:
        """(tp, the offset to commit: after the last settled event; None: none settled)."""
        next_offset: int | None = None
        for record in records:
            try:
                await self.handle(record)
            except _Unsettled as exc:
                self._down(exc.dependency)
                return tp, next_offset
            next_offset = record.offset + 1
        return tp, next_offset

    def _down(self, dependency: str) -> None:
        if dependency not in self.unavailable:
            log.warning("webhooks: %s unavailable; deliveries wait for it", dependency)
        self.unavailable.setdefault(dependency, time.time())


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the dispatcher until SIGTERM/SIGINT (or until `stop` is set, when given)."""
    key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    if key is None:  # before any client exists: nothing to close on the way out
        raise SecretsUnavailable(
            "the webhook dispatcher needs MUGPOS_ENCRYPTION_KEY (endpoint secrets are encrypted)"
        )
    install_reconnect_backoff()
    topics = TopicNames(settings.topic_prefix)
    client = mongo.create_client(settings)
    db = mongo.database(client, settings)
    consumer = AIOKafkaConsumer(
        topics.alerts,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}-webhooks",
        client_id=f"{settings.topic_prefix}-webhooks",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_client_kwargs(settings),
    )
    producer = create_producer(settings)
    http = WebhookClient(
        timeout_s=settings.webhook_timeout_s, allowed=settings.webhook_allow_networks
    )
    dispatcher = Dispatcher(
        settings,
        WebhookEndpoints(db, key),
        WebhookDeliveries(db),
        http,
        producer,
        topics,
    )
    async with standalone(settings, stop, lambda: dict(dispatcher.unavailable)) as shell:
        try:
            await mongo.ensure_indexes(db)
            await producer.start()
            await consumer.start()
            shell.state = "running"
            log.info("webhooks: delivering alert events from %s", topics.alerts)
            while not shell.stop.is_set():
                batch = await consumer.getmany(timeout_ms=1000, max_records=100)
                if not batch:
                    continue
                if not await dispatcher.run_batch(consumer, batch):
                    shell.state = "degraded"
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(shell.stop.wait(), OUTAGE_PAUSE_S)
                else:
                    shell.state = "running"
        finally:
            shell.state = "stopping"
            await consumer.stop()
            await producer.stop()
            await http.close()
            client.close()
