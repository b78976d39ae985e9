"""Completes waiting requests and feeds live subscribers from the results topic.

A waiter is registered *before* its image is enqueued (or before the stores are re-checked), so a
result cannot slip past between the check and the wait. Subscribers get bounded queues: a slow
WebSocket client loses its oldest events, never the API's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

SUBSCRIBER_QUEUE = 1000


@dataclass(eq=False)
class Subscription:
    source_id: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    dropped: int = 0

    def offer(self, event: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class ResultsHub:
    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = defaultdict(list)
        self._subscriptions: set[Subscription] = set()

    async def on_result(self, key: bytes, value: bytes) -> None:
        result = orjson.loads(value)
        for future in self._waiters.pop(result.get("request_id", key.decode()), []):
            if not future.done():
                future.set_result(result)
        self.publish_event({"type": "result", "data": result}, result.get("source_id"))

    def publish_event(self, event: dict[str, Any], source_id: str | None = None) -> None:
        """To every subscriber; results only to those following their source (or all)."""
        for sub in self._subscriptions:
            if source_id is None or sub.source_id in (None, source_id):
                sub.offer(event)

    @contextlib.contextmanager
    def waiting(self, request_id: str) -> Iterator[asyncio.Future[dict[str, Any]]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[request_id].append(future)
        try:
            yield future
        finally:
            waiters = self._waiters.get(request_id)
            if waiters and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[request_id]

    @contextlib.contextmanager
    def subscribe(self, source_id: str | None = None) -> Iterator[Subscription]:
        sub = Subscription(source_id)
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)

    @property
    def pending_waiters(self) -> int:
        return sum(len(v) for v in self._waiters.values())
