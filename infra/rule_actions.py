"""What a failed rule does: publish an alert to `{prefix}.alerts.v1`, POST a webhook.

Webhooks get a timeout per attempt and a bounded number of retries with exponential back-off on
connection errors, timeouts and 5xx answers; a 4xx answer is final (retrying cannot fix it). A
failed delivery is reported, never raised: actions must not stop a worker.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from core.rules.engine import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    attempts: int
    status: int | None
    error: str | None = None


def alert_payload(verdict: Verdict, request_id: str, source_id: str) -> dict[str, object]:
    return {
        "schema_version": 1,
        "request_id": request_id,
        "source_id": source_id,
        "rule_id": verdict.rule_id,
        "rule_version": verdict.version,
        "rule": verdict.name,
        "severity": verdict.severity,
        "subjects": list(verdict.subjects),
        "measured": verdict.measured,
        "threshold": verdict.threshold,
        "message": verdict.message,
        "raised_at": datetime.now(UTC).isoformat(),
    }


async def publish_alert(producer: AIOKafkaProducer, topic: str, payload: dict[str, object]) -> None:
    await producer.send_and_wait(
        topic, orjson.dumps(payload), key=str(payload["request_id"]).encode()
    )


class WebhookSender:
    def __init__(self, *, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.5) -> None:
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._session: aiohttp.ClientSession | None = None

    async def send(self, url: str, payload: dict[str, object]) -> Delivery:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"content-type": "application/json", "user-agent": "mugpos-webhook/1"},
            )
        body = orjson.dumps(payload)
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.retries + 2):
            try:
                async with self._session.post(url, data=body) as response:
                    status = response.status
                    if status < 400:
                        return Delivery(True, attempt, status)
                    error = f"HTTP {status}"
                    if status < 500:
                        break  # the receiver refuses this payload; retrying cannot help
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt <= self.retries:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        log.warning("webhook %s failed after %d attempt(s): %s", url, attempt, error)
        return Delivery(False, attempt, status, error)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
