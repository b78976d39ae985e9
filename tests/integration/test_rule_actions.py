"""Rule actions against real peers: a loopback HTTP server for webhooks, Kafka for alerts."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.config import Settings
from core.positioning import analyze
from core.rules import compile_rule, parse_rule
from infra.kafka_admin import KafkaAdmin, topic_specs
from infra.launchers import free_port
from infra.rule_actions import WebhookSender, alert_payload, publish_alert
from schemas.topics import TopicNames
from tests.unit.test_positioning import CALIBRATED, IMAGE, TABLE, mug


async def _server(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


async def test_webhook_retries_5xx_with_backoff_then_succeeds() -> None:
    received: list[dict] = []

    async def flaky(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=503 if len(received) < 3 else 200)

    runner, url = await _server(flaky)
    sender = WebhookSender(timeout_s=2, retries=3, backoff_s=0.05)
    try:
        delivery = await sender.send(url, {"rule": "r", "n": 1})
    finally:
        await sender.close()
        await runner.cleanup()
    assert (delivery.ok, delivery.attempts, delivery.status) == (True, 3, 200)
    assert received == [{"rule": "r", "n": 1}] * 3


async def test_webhook_4xx_is_not_retried() -> None:
    calls = []

    async def refuse(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=422)

    runner, url = await _server(refuse)
    sender = WebhookSender(timeout_s=2, retries=3, backoff_s=0.05)
    try:
        delivery = await sender.send(url, {})
    finally:
        await sender.close()
        await runner.cleanup()
    assert (delivery.ok, delivery.attempts, delivery.error) == (False, 1, "HTTP 422")
    assert len(calls) == 1


async def test_webhook_timeouts_are_retried_then_reported() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    runner, url = await _server(slow)
    sender = WebhookSender(timeout_s=0.2, retries=2, backoff_s=0.01)
    try:
        delivery = await sender.send(url, {})
    finally:
        await sender.close()
        await runner.cleanup()
    assert (delivery.ok, delivery.attempts) == (False, 3)
    assert "Timeout" in (delivery.error or "")


async def test_alert_is_published_to_the_alerts_topic(service_settings: Settings) -> None:
    topics = TopicNames(service_settings.topic_prefix)
    admin = KafkaAdmin(service_settings.kafka_bootstrap)
    try:
        await admin.declare(topic_specs(service_settings))
    finally:
        await admin.close()
    facts = analyze([TABLE, mug(22, 75)], IMAGE, CALIBRATED)
    verdict = compile_rule(
        parse_rule("If a mug is off its coaster and within 3 cm of the edge, alert (critical)."),
        "r9",
    ).evaluate(facts)
    assert verdict.actions == ("alert",)
    producer = AIOKafkaProducer(bootstrap_servers=service_settings.kafka_bootstrap)
    await producer.start()
    try:
        await publish_alert(producer, topics.alerts, alert_payload(verdict, "req-42", "cam-1"))
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topics.alerts,
        bootstrap_servers=service_settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=service_settings.topic_prefix,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    alert = orjson.loads(record.value)
    assert record.key == b"req-42"
    assert (alert["rule_id"], alert["severity"], alert["subjects"]) == ("r9", "critical", [0])
