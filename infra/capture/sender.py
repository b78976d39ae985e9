"""Frames to the images topic, with at most `max_in_flight` sends unacknowledged.

Between the readers and the producer sits a one-frame mailbox. The sender takes a frame from it
only when a send slot is free, so while the broker is slow the mailbox stays full: a live source
then replaces the waiting frame with its newer one (the older is counted as dropped: latest-frame
semantics, a camera's old pictures are worth nothing later), while a file or folder waits for
room (nothing of a recording is lost)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer

from core.ingest.change import ChangeFilter
from core.ingest.stats import IngestStats
from core.ingest.wire import RequestIds, frame_headers, frame_key
from infra.capture.frames import Frame, decode_image, encode_jpeg
from schemas.topics import INLINE_MAX_BYTES

log = logging.getLogger(__name__)


class FrameSender:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        stats: IngestStats,
        *,
        max_in_flight: int = 16,
        change: ChangeFilter | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._stats = stats
        self.change = change  # the readers ask it; the sender tells it what was handed over
        self._limit = inline_max_bytes
        self._ids = RequestIds(stats.source_id)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._slot: Frame | None = None
        self._filled = asyncio.Event()
        self._emptied = asyncio.Event()
        self._emptied.set()
        self._closing = False
        self._finished = asyncio.Event()
        self._pending: set[asyncio.Future] = set()

    async def offer_latest(self, frame: Frame) -> None:
        """Live sources: never wait; a frame still waiting for a slot is replaced (dropped)."""
        if self._slot is not None:
            self._stats.dropped += 1
        self._put(frame)

    async def put(self, frame: Frame) -> None:
        """Files and folders: wait until the previous frame is on its way."""
        while self._slot is not None:
            self._emptied.clear()
            await self._emptied.wait()
        self._put(frame)

    def _put(self, frame: Frame) -> None:
        # The change filter compares with the frame handed over, not the one last on the wire:
        # a reader faster than the sender would otherwise compare with a frame two back. A
        # handed-over frame is sent, or replaced by a newer one that differed from it.
        if self.change is not None and frame.fingerprint is not None:
            self.change.sent(frame.fingerprint)
        self._slot = frame
        self._emptied.clear()
        self._filled.set()

    async def run(self) -> None:
        """Until close(): take a frame when a slot is free, encode it (off the loop), send it."""
        try:
            await self._run()
        finally:
            self._finished.set()

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            while self._slot is None:
                if self._closing:
                    self._slots.release()
                    return
                self._filled.clear()
                await self._filled.wait()
            frame, self._slot = self._slot, None
            self._emptied.set()
            try:
                await self._send(frame)
            except asyncio.CancelledError:  # given up at the end (close): never handed over
                self._slots.release()
                self._stats.failed += 1
                raise
            except Exception as exc:  # this frame is lost; the next may well go
                self._slots.release()
                self._stats.failed += 1
                where = f" ({frame.name})" if frame.name else ""
                log.warning("could not send a frame%s: %s", where, exc or type(exc).__name__)

    async def _send(self, frame: Frame) -> None:
        data, content_type = frame.data, frame.content_type
        if frame.pixels is not None:
            data, shrunk = await asyncio.to_thread(encode_jpeg, frame.pixels, self._limit)
            content_type = "image/jpeg"
            self._stats.downscaled += shrunk
        elif data is not None and len(data) > self._limit:
            pixels = await asyncio.to_thread(decode_image, data)
            if pixels is None:
                raise ValueError(f"{frame.name}: over {self._limit} bytes and not decodable")
            data, _ = await asyncio.to_thread(encode_jpeg, pixels, self._limit)
            content_type = "image/jpeg"
            self._stats.downscaled += 1
            log.info("%s: over %d bytes, sent as a smaller JPEG", frame.name, self._limit)
        assert data is not None
        request_id = self._ids.next(frame.captured_at)
        source_id = self._stats.source_id
        future = await self._producer.send(
            self._topic,
            data,
            key=frame_key(source_id, request_id),
            headers=frame_headers(request_id, source_id, frame.captured_at, content_type),
        )
        self._stats.sent += 1
        self._pending.add(future)
        future.add_done_callback(self._acknowledged)

    def _acknowledged(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        self._slots.release()
        if future.cancelled() or future.exception() is not None:
            self._stats.failed += 1
            if not future.cancelled():
                log.warning("the broker did not take a frame: %s", future.exception())
        else:
            self._stats.acked += 1

    async def close(self, timeout_s: float) -> None:
        """Send what waits in the mailbox, then wait (up to `timeout_s` in all) for every send
        to be acknowledged; those still unanswered then count as failed, a frame still waiting
        for a slot as dropped. Cancel the run() task afterwards (a no-op if it has ended)."""
        self._closing = True
        self._filled.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._finished.wait()  # run() has handed everything to the producer
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=max(0.0, deadline - loop.time()))
        unanswered = list(self._pending)
        for future in unanswered:
            future.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)  # their callbacks count them
        if self._slot is not None:
            self._slot = None
            self._stats.dropped += 1
