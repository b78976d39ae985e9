"""Writes that need not hold up a request, gathered and written in batches by one background task.

The API's upload path answers once the image is durable in Kafka; the bookkeeping around it (the
`pending` placeholder in MongoDB, the audit entry) is written here: one MongoDB round trip per
batch instead of two per upload, off the request's latency. While a batch is being written the
next one fills, so batches grow with the load and the writes per second stay bounded.

A failed write is retried with capped backoff (the items stay buffered, in order), so a MongoDB
outage delays the bookkeeping without failing uploads. The buffer is bounded: past `max_buffered`
the oldest items are dropped and counted. `close()` writes what is left (within a deadline).
What is buffered when the process is killed is lost: a crash loses at most the last
`interval_s` of bookkeeping, never an accepted image.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class WriteBehind(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], Awaitable[None]],
        key: Callable[[T], Hashable],
        *,
        interval_s: float = 0.05,
        max_batch: int = 1000,
        max_buffered: int = 100_000,
    ) -> None:
        """`write` stores one batch (raising on failure); `key` names an item, for `get`.
        `interval_s` is how long the task gathers items before a write: the longest an item
        waits, and what bounds the writes per second under load."""
        self.name = name
        self._write = write
        self._key = key
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._max_buffered = max_buffered
        self._buffer: OrderedDict[Hashable, T] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.dropped = 0
        self.failures = 0

    def add(self, item: T) -> None:
        """Buffer one item; it is written within about `interval_s` while the store is up."""
        if self._closed:
            raise RuntimeError(f"{self.name}: closed")
        self._buffer[self._key(item)] = item
        if len(self._buffer) > self._max_buffered:
            self._buffer.popitem(last=False)
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("%s: buffer full, %d oldest item(s) dropped", self.name, self.dropped)
        self._wake.set()
        if self._task is None:
            # In a context of its own, not the first caller's: its writes are no request's
            # (a trace would show them under whichever request started the writer).
            self._task = asyncio.create_task(
                self._run(), name=f"write-behind-{self.name}", context=contextvars.Context()
            )

    def get(self, key: Hashable) -> T | None:
        """An item not written yet, by key."""
        return self._buffer.get(key)

    def __len__(self) -> int:
        return len(self._buffer)

    async def _run(self) -> None:
        attempt = 0
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval_s)  # gather what arrives meanwhile
            if await self._flush_once():
                attempt = 0
            else:
                await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
                attempt += 1

    async def _flush_once(self) -> bool:
        """Write one batch; True when written (or nothing was buffered)."""
        batch = list(self._buffer.items())[: self._max_batch]
        if not batch:
            self._wake.clear()
            return True
        try:
            await self._write([item for _, item in batch])
        except Exception as exc:  # the store's error, whatever the driver: retried, not raised
            self.failures += 1
            if self.failures == 1 or self.failures % 20 == 0:
                log.warning(
                    "%s: %d item(s) not written yet (%s); retrying", self.name, len(self), exc
                )
            return False
        for key, item in batch:
            if self._buffer.get(key) is item:  # not replaced by a newer item meanwhile
                del self._buffer[key]
        if not self._buffer:
            self._wake.clear()
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking items and write what is buffered, giving up after `timeout_s`."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._buffer and loop.time() < deadline:
            try:
                written = await asyncio.wait_for(
                    self._flush_once(), max(0.01, deadline - loop.time())
                )
            except TimeoutError:
                break
            if not written:
                await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
        if self._buffer:
            log.error("%s: %d item(s) lost at shutdown (not written)", self.name, len(self))
