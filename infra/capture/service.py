"""The streams service's core (`mugpos streams run`, agents.streams): every camera stream stored
in `source_streams` read as an asyncio task of its own, all through one Kafka producer.

Simple and robust rather than clever: every POLL_S (2 s) the service reads the whole collection
and reconciles: a new stream is started, one whose spec changed (its `updated_at` moved) is
stopped and started again, a deleted one is stopped. A MongoDB outage keeps the running streams
as they are. Each stream's health (state, fps, counters, last frame, an operator-readable error)
is written every HEALTH_S (2 s) and whenever its state changes; a write that matches no document
(the stream was deleted or replaced meanwhile) writes nothing.

Each replica of the service reads every stream, so it runs as ONE replica (the Helm chart's
Deployment has replicas 1 and strategy Recreate)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from core.ingest.source import mask_url, network_stream
from core.ingest.stats import IngestStats
from infra.capture.frames import quiet_opencv
from infra.capture.runner import IngestOptions, run_source
from infra.streams_store import StoredStream, StreamsStore

log = logging.getLogger(__name__)
POLL_S = 2.0
HEALTH_S = 2.0
STATE_CHECK_S = 0.25  # how soon a state change is written
RESTART_AFTER_S = 10.0  # a stream whose capture failed unexpectedly is started again after this
STOP_TIMEOUT_S = 20.0  # at the end: how long a stream may take to send what it sampled
FLUSH_TIMEOUT_S = 10.0

# What the capture's states mean to an operator.
_STATES = {
    "starting": "connecting",
    "connecting": "connecting",
    "connected": "connected",
    "reconnecting": "reconnecting",
    "stopping": "stopped",
    "ended": "stopped",
}


@dataclass(slots=True)
class _Running:
    spec: StoredStream
    stats: IngestStats
    stop: asyncio.Event
    task: asyncio.Task[str]
    failed_at: float | None = None  # monotonic
    written_state: str | None = None
    written_at: float = 0.0  # monotonic


def options_of(spec: StoredStream) -> IngestOptions:
    return IngestOptions(
        every_s=spec.every_s,
        on_change=spec.on_change,
        change_threshold=spec.change_threshold,
        rtsp_transport=spec.rtsp_transport,
        flush_timeout_s=FLUSH_TIMEOUT_S,
    )


def health_of(running: _Running, service_id: str, now: float, wall: datetime) -> dict[str, Any]:
    """The health document of a stream (`now`: monotonic, `wall`: the same instant in UTC)."""
    stats = running.stats
    if running.task.done() and running.failed_at is not None:
        state = "failed"
    else:
        state = _STATES.get(stats.state, "connecting")
    if state == "failed":
        error = (
            f"the capture stopped unexpectedly (the service's log says why); it is started "
            f"again within {RESTART_AFTER_S:.0f} s"
        )
    elif state == "reconnecting":
        error = "the stream was lost or does not answer; reconnecting with back-off"
    elif state == "connecting" and stats.frames_read == 0 and now - stats.started_at > 15:
        error = "the stream does not answer or cannot be opened; trying again with back-off"
    elif stats.failed:
        error = f"{stats.failed} frame(s) so far were not acknowledged by Kafka"
    else:
        error = None
    last = stats.last_frame_at
    return {
        "state": state,
        "fps": round(stats.fps(now), 2),
        "frames_read": stats.frames_read,
        "sent": stats.sent,
        "unchanged": stats.unchanged,
        "dropped": stats.dropped,
        "reconnects": stats.reconnects,
        "last_frame_at": None if last is None else wall - timedelta(seconds=now - last),
        "error": error,
        "service_id": service_id,
        "updated_at": wall,
    }


class StreamService:
    def __init__(
        self,
        store: StreamsStore,
        producer: AIOKafkaProducer,
        topic: str,
        service_id: str,
        *,
        poll_s: float = POLL_S,
        health_s: float = HEALTH_S,
    ) -> None:
        self._store = store
        self._producer = producer
        self._topic = topic
        self.service_id = service_id
        self._poll_s = poll_s
        self._health_s = health_s
        self._running: dict[str, _Running] = {}
        self._finishing: set[asyncio.Task[None]] = set()  # streams stopped, still sending
        self.unavailable: dict[str, float] = {}  # dependency -> since (epoch s), for /readyz

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: poll, reconcile, report health; then stop every stream (each sends
        what it sampled) and write it `stopped`."""
        quiet_opencv()
        health = asyncio.create_task(self._report(stop), name="streams-health")
        try:
            while not stop.is_set():
                await self._poll()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)
        finally:
            health.cancel()
            await asyncio.gather(health, return_exceptions=True)
            await self._stop_all()

    async def _poll(self) -> None:
        try:
            specs = {s.source_id: s for s in await self._store.list()}
        except Exception as exc:  # MongoDB unavailable: keep what runs
            if "mongodb" not in self.unavailable:
                log.warning("streams: cannot read the streams (%s); keeping those running", exc)
            self.unavailable.setdefault("mongodb", time.time())
            return
        if self.unavailable.pop("mongodb", None) is not None:
            log.info("streams: MongoDB answers again")
        for source_id in list(self._running):
            spec = specs.get(source_id)
            running = self._running[source_id]
            if spec is None:
                log.info("streams: %s deleted; stopping it", source_id)
                await self._stop(source_id)
            elif spec.updated_at != running.spec.updated_at:
                log.info("streams: %s changed; restarting it", source_id)
                await self._stop(source_id)
            elif (
                running.task.done()
                and running.failed_at is not None
                and time.monotonic() - running.failed_at >= RESTART_AFTER_S
            ):
                await self._stop(source_id)
        for source_id, spec in specs.items():
            if source_id not in self._running:
                self._start(spec)

    def _start(self, spec: StoredStream) -> None:
        try:
            source = network_stream(spec.url)
        except ValueError as exc:  # written by hand into the collection: never by the API
            log.warning("streams: %s cannot be read: %s", spec.source_id, exc)
            return
        stats = IngestStats(spec.source_id, started_at=time.monotonic())
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_source(self._producer, self._topic, source, options_of(spec), stats, stop),
            name=f"stream-{spec.source_id}",
        )
        running = _Running(spec, stats, stop, task)
        task.add_done_callback(lambda t, r=running: self._ended(r, t))
        self._running[spec.source_id] = running
        log.info(
            "streams: reading %s from %s every %g s",
            spec.source_id,
            mask_url(spec.url),
            spec.every_s,
        )

    def _ended(self, running: _Running, task: asyncio.Task[str]) -> None:
        if task.cancelled() or running.stop.is_set():
            return
        error = task.exception()
        running.failed_at = time.monotonic()
        if error is not None:
            log.error(
                "streams: the capture of %s failed: %s",
                running.spec.source_id,
                error,
                exc_info=error,
            )
        else:  # a live stream only ends when stopped
            log.error("streams: the capture of %s ended unexpectedly", running.spec.source_id)

    async def _stop(self, source_id: str) -> None:
        running = self._running.pop(source_id)
        running.stop.set()
        # In the background: it sends what it sampled while the other streams go on.
        finishing = asyncio.create_task(self._finish(running), name=f"stream-{source_id}-stop")
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finishing.discard)

    async def _finish(self, running: _Running) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.gather(running.task, return_exceptions=True)
        except TimeoutError:
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)

    async def _stop_all(self) -> None:
        ids = list(self._running)
        stopping = [self._running.pop(i) for i in ids]
        for running in stopping:
            running.stop.set()
        await asyncio.gather(*(self._finish(r) for r in stopping), *self._finishing)
        wall, now = datetime.now(UTC), time.monotonic()
        for running in stopping:
            health = health_of(running, self.service_id, now, wall)
            health["state"] = "stopped"
            health["error"] = "the streams service stopped"
            with contextlib.suppress(Exception):
                await self._store.write_health(
                    running.spec.source_id, running.spec.updated_at, health
                )

    async def _report(self, stop: asyncio.Event) -> None:
        """Health every `health_s`, and within STATE_CHECK_S of a state change."""
        while not stop.is_set():
            now, wall = time.monotonic(), datetime.now(UTC)
            for running in list(self._running.values()):
                health = health_of(running, self.service_id, now, wall)
                due = now - running.written_at >= self._health_s
                if not due and health["state"] == running.written_state:
                    continue
                try:
                    await self._store.write_health(
                        running.spec.source_id, running.spec.updated_at, health
                    )
                except Exception as exc:
                    if "mongodb" not in self.unavailable:
                        log.warning("streams: cannot write health (%s)", exc)
                    continue
                running.written_state, running.written_at = health["state"], now
            await asyncio.sleep(STATE_CHECK_S)
