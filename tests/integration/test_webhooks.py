"""The webhook dispatcher (agents.webhooks) against real Kafka and MongoDB and a loopback receiver:
signed once-only delivery, a receiver down then up, one that always fails, and the SSRF guard.

The receivers listen on 127.0.0.1, which the guard refuses by default: these tests allow
127.0.0.1/32 (MUGPOS_WEBHOOK_ALLOW_NETWORKS) except the one that shows the default refusing it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from pydantic import SecretStr

from agents.webhooks import serve
from core.config import Settings
from core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from infra import mongo
from infra.launchers import free_port
from infra.webhooks_store import WebhookDeliveries, WebhookEndpoints
from schemas.messages import Alert, DeadLetter
from schemas.topics import TopicNames
from tests.integration.kafka_io import eventually, publish, read_to_end

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _settings(deployment: Settings, **changes: Any) -> Settings:
    return deployment.model_copy(
        update={
            "encryption_key": SecretStr(Fernet.generate_key().decode()),
            "webhook_allow_networks": ["127.0.0.1/32"],
            "webhook_backoff_s": 0.2,
            "webhook_timeout_s": 2.0,
        }
        | changes
    )


def _alert(n: int, webhooks: list[str], event: str = "raised") -> Alert:
    return Alert(
        alert_id=f"alert-{n}-{event}",
        dedup_key=f"cam-1/rule-1/t{n}",
        event=event,  # type: ignore[arg-type]
        request_id=f"frame-{n}",
        source_id="cam-1",
        rule_id="rule-1",
        rule_version=1,
        rule="Every mug must be on a coaster.",
        severity="warning",
        subject=f"t{n}",
        subjects=[0],
        measured=False,
        threshold=True,
        message="mug 0 is not on a coaster",
        raised_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        webhooks=webhooks,
    )


class Receiver:
    """A loopback HTTP receiver that records what it was sent."""

    def __init__(self, handler: Handler | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._handler = handler
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if self._handler is not None:
            return await self._handler(request)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def dispatcher(settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _register(settings: Settings, name: str, url: str, fmt: str = "json") -> str:
    client = mongo.create_client(settings)
    try:
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        _, secret = await WebhookEndpoints(mongo.database(client, settings), key).put(
            name,
            url,
            fmt,  # type: ignore[arg-type]
        )
        assert secret is not None
        return secret
    finally:
        client.close()


async def _deliveries(settings: Settings, **query: Any) -> list[dict[str, Any]]:
    client = mongo.create_client(settings)
    try:
        return await WebhookDeliveries(mongo.database(client, settings)).list(**query)
    finally:
        client.close()


async def _settled(settings: Settings, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        log = await _deliveries(settings)
        return log if len(log) >= count and all(d["status"] != "pending" for d in log) else None

    return await eventually(check, 60, f"{count} deliveries settled")


async def _publish(settings: Settings, alerts: list[Alert]) -> None:
    topic = TopicNames(settings.topic_prefix).alerts
    items = [(a.request_id, a.model_dump_json().encode(), [], 0) for a in alerts]
    await publish(settings, items, topic=topic)


async def _letters(settings: Settings, count: int) -> list[DeadLetter]:
    async def check() -> list[DeadLetter] | None:
        records = await read_to_end(settings, TopicNames(settings.topic_prefix).dlq)
        letters = [DeadLetter.model_validate_json(r.value) for r in records]
        return letters if len(letters) >= count else None

    return await eventually(check, 30, f"{count} dead letters", every_s=0.5)


async def test_an_event_is_delivered_once_signed_even_when_read_twice(
    deployment: Settings,
) -> None:
    settings = _settings(deployment)
    receiver = Receiver()
    await receiver.start()
    try:
        secret = await _register(settings, "ops", receiver.url)
        slack = await _register(settings, "chat", receiver.url, "slack")
        assert secret != slack
        alert = _alert(1, ["ops", "chat"])
        # The same event twice, as a frame redelivered upstream republishes it.
        await _publish(settings, [alert, alert])
        async with dispatcher(settings):
            log = await _settled(settings, 2)
            await asyncio.sleep(1.0)  # time for a wrong second delivery to arrive
    finally:
        await receiver.stop()
    assert sorted((d["endpoint"], d["status"], d["attempts"]) for d in log) == [
        ("chat", "delivered", 1),
        ("ops", "delivered", 1),
    ]
    assert len(receiver.received) == 2, "each endpoint got the event once"
    bodies = {}
    for headers, body in receiver.received:
        stamp = int(headers[TIMESTAMP_HEADER])
        signature = headers[SIGNATURE_HEADER]
        assert headers["X-Mugpos-Alert-Id"] == alert.alert_id
        matches = [
            n for n, s in (("ops", secret), ("chat", slack)) if verify(s, stamp, body, signature)
        ]
        assert len(matches) == 1, "signed with its own endpoint's secret"
        assert not verify(secret, stamp + 1, body, signature), "the timestamp is signed too"
        bodies[matches[0]] = body
    assert Alert.model_validate_json(bodies["ops"]) == alert
    assert b'"text"' in bodies["chat"]
    assert b"Every mug must be on a coaster." in bodies["chat"]


async def test_a_receiver_down_then_up_gets_the_event_after_retries(deployment: Settings) -> None:
    settings = _settings(deployment, webhook_attempts=10, webhook_backoff_s=0.3)
    receiver = Receiver()  # not listening yet: connections are refused
    secret = await _register(settings, "ops", receiver.url)
    await _publish(settings, [_alert(2, ["ops"])])
    try:
        async with dispatcher(settings):

            async def tried() -> bool:
                return any(d["attempts"] >= 2 for d in await _deliveries(settings))

            await eventually(tried, 30, "two failed tries")
            await receiver.start()
            (entry,) = await _settled(settings, 1)
    finally:
        await receiver.stop()
    assert entry["status"] == "delivered"
    assert entry["attempts"] >= 3
    assert entry["last_status_code"] == 204
    ((headers, body),) = receiver.received
    assert verify(secret, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])


async def test_a_receiver_that_always_fails_gets_a_dead_letter(deployment: Settings) -> None:
    settings = _settings(deployment, webhook_attempts=3, webhook_backoff_s=0.1)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500)

    receiver = Receiver(broken)
    await receiver.start()
    try:
        await _register(settings, "ops", receiver.url)
        await _publish(settings, [_alert(3, ["ops"]), _alert(4, ["ops"])])
        async with dispatcher(settings):
            log = await _settled(settings, 2)
            letters = await _letters(settings, 2)
    finally:
        await receiver.stop()
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
        ("dead_lettered", 3, 500)
    ] * 2
    assert len(receiver.received) == 6
    assert sorted((x.stage, x.reason, x.request_id) for x in letters) == [
        ("webhooks", "webhook_undeliverable", "frame-3"),
        ("webhooks", "webhook_undeliverable", "frame-4"),
    ]
    assert all(x.original_headers["webhook-endpoint"] == "ops" for x in letters)
    assert "HTTP 500 after 3 tries" in letters[0].message


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://127.0.0.1:{port}/hook", "127.0.0.1 is a loopback address"),
        # A name is checked where it is resolved, on the address actually connected to.
        ("http://localhost:{port}/hook", "localhost resolves to"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ],
)
async def test_private_targets_are_refused_by_default(
    deployment: Settings, target: str, why: str
) -> None:
    settings = _settings(deployment, webhook_allow_networks=[])
    receiver = Receiver()
    await receiver.start()
    try:
        # Stored directly: the API would refuse it at registration.
        await _register(settings, "ops", target.format(port=receiver.port))
        await _publish(settings, [_alert(5, ["ops"])])
        async with dispatcher(settings):
            (entry,) = await _settled(settings, 1)
            letters = await _letters(settings, 1)
    finally:
        await receiver.stop()
    assert entry["status"] == "refused"
    assert why in entry["last_error"]
    assert receiver.received == []
    ((letter),) = letters
    assert (letter.stage, letter.reason) == ("webhooks", "webhook_target_refused")
