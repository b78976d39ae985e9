"""`mugpos ingest`, put together: a reader (video file, live stream or folder), the sampling
schedule and change filter of core.ingest, and the bounded sender, until the source ends or the
caller sets `stop`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

from core.config import Settings
from core.imaging.decode import CONTENT_TYPES, sniff_format
from core.ingest.change import ChangeFilter
from core.ingest.schedule import SamplingSchedule
from core.ingest.source import SourceKind, SourceSpec
from core.ingest.stats import IngestStats
from infra.capture.folder import FolderWatcher
from infra.capture.frames import Frame, file_print, pixels_print, quiet_opencv
from infra.capture.live import LiveStream
from infra.capture.sender import FrameSender
from infra.capture.video import VideoFile
from infra.kafka_admin import KafkaAdmin
from infra.kafka_clients import create_producer
from schemas.topics import TopicNames

log = logging.getLogger(__name__)
PRODUCER_STOP_S = 5.0


class IngestError(RuntimeError):
    """Ingestion cannot start (no images topic, a video that does not open)."""


@dataclass(frozen=True, slots=True)
class IngestOptions:
    every_s: float = 1.0
    on_change: bool = False
    change_threshold: int = 2  # blocks of core.ingest.change's 32 x 32 grid
    max_in_flight: int = 16
    rtsp_transport: str = "tcp"
    timeout_s: float = 10.0  # opening and reading a live stream
    poll_s: float = 0.5  # folders
    flush_timeout_s: float = 30.0  # at the end: how long to wait for the broker's acks


Reader = Callable[[SourceSpec, IngestOptions, IngestStats, FrameSender], Awaitable[None]]


async def _unchanged(
    frame: Frame,
    change: ChangeFilter | None,
    stats: IngestStats,
    print_of: Callable[[], np.ndarray | None],
) -> bool:
    """--on-change: fingerprint the frame (off the loop); True when it shows nothing new."""
    if change is None:
        return False
    frame.fingerprint = await asyncio.to_thread(print_of)
    if frame.fingerprint is not None and change.unchanged(frame.fingerprint):
        stats.unchanged += 1
        return True
    return False


async def read_video(
    spec: SourceSpec, options: IngestOptions, stats: IngestStats, sender: FrameSender
) -> None:
    """Samples on the video's timeline; `captured-at` is the start of ingestion plus the frame's
    time in the video, so time-based rules see the recording's own pace."""
    try:
        video = await asyncio.to_thread(VideoFile, spec.location)
    except OSError as exc:
        raise IngestError(str(exc)) from None
    change = sender.change
    schedule = SamplingSchedule(options.every_s)
    started = datetime.now(UTC)
    stats.state = "reading"

    def counted() -> None:
        stats.frame_read(time.monotonic())

    try:
        while sample := await asyncio.to_thread(video.next_sample, schedule, counted):
            offset_s, pixels = sample
            frame = Frame(started + timedelta(seconds=offset_s), pixels=pixels)
            if not await _unchanged(frame, change, stats, lambda p=pixels: pixels_print(p)):
                await sender.put(frame)
    finally:
        video.stop()
        await asyncio.to_thread(video.close)


async def read_live(
    spec: SourceSpec, options: IngestOptions, stats: IngestStats, sender: FrameSender
) -> None:
    """At each sampling instant (wall clock), the newest frame the reader thread holds, if it
    is newer than the last one taken; runs until cancelled."""
    stream = LiveStream(
        spec,
        stats,
        open_timeout_s=options.timeout_s,
        read_timeout_s=options.timeout_s,
        rtsp_transport=options.rtsp_transport,
    )
    loop = asyncio.get_running_loop()
    connection = asyncio.create_task(stream.run(), name="ingest-connection")
    schedule = SamplingSchedule(options.every_s, start=loop.time())
    last_seq = 0
    try:
        while True:
            delay = schedule.next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            schedule.taken(loop.time())
            if connection.done():
                connection.result()  # an unexpected error ends ingestion, named
            latest = stream.latest()
            if latest is None or latest.seq == last_seq:
                continue  # nothing new since the last instant (connecting, or stalled)
            last_seq = latest.seq
            frame = Frame(latest.captured_at, pixels=latest.pixels)
            if not await _unchanged(
                frame, sender.change, stats, lambda p=latest.pixels: pixels_print(p)
            ):
                await sender.offer_latest(frame)
    finally:
        stream.stop()
        connection.cancel()
        await asyncio.gather(connection, return_exceptions=True)
        grace_s = options.timeout_s + 2
        if not await asyncio.to_thread(stream.join, grace_s):
            # The command then ends with os._exit (control.ingest_cli): see LiveStream.join.
            log.warning("the capture did not end within %.0f s; exiting without it", grace_s)


async def read_folder(
    spec: SourceSpec, options: IngestOptions, stats: IngestStats, sender: FrameSender
) -> None:
    """Each complete image file once, bytes unchanged; `captured-at` is the file's modification
    time (when the camera or tool wrote it), so a backlog keeps its own times. Until cancelled."""
    folder = Path(spec.location)
    watcher = FolderWatcher(folder)
    stats.state = "watching"
    while True:
        ready, skipped = await asyncio.to_thread(watcher.poll, time.time_ns())
        for path in skipped:
            stats.skipped_files += 1
            log.warning("%s: videos in a watched folder are not read; ingest it on its own", path)
        for path in ready:
            try:
                data = await asyncio.to_thread(path.read_bytes)
                modified = path.stat().st_mtime
            except OSError as exc:  # removed in between
                log.warning("%s: could not be read: %s", path, exc)
                continue
            kind = sniff_format(data)
            if kind not in CONTENT_TYPES:
                stats.skipped_files += 1
                log.warning("%s: not an image the pipeline reads; skipped", path)
                continue
            stats.frame_read(time.monotonic())
            frame = Frame(
                datetime.fromtimestamp(modified, UTC),
                data=data,
                content_type=CONTENT_TYPES[kind],
                name=path.name,
            )
            if not await _unchanged(frame, sender.change, stats, lambda d=data: file_print(d)):
                await sender.put(frame)
        await asyncio.sleep(options.poll_s)


READERS: dict[SourceKind, Reader] = {
    SourceKind.VIDEO: read_video,
    SourceKind.FOLDER: read_folder,
    SourceKind.RTSP: read_live,
    SourceKind.HTTP: read_live,
    SourceKind.DEVICE: read_live,
}


async def check_topic(settings: Settings, topic: str) -> None:
    admin = KafkaAdmin(settings)
    try:
        found = (await admin.partitions([topic])).get(topic)
    finally:
        await admin.close()
    if not found:
        raise IngestError(f"topic {topic} does not exist; run `mugpos setup` first")


async def ingest(
    settings: Settings,
    spec: SourceSpec,
    options: IngestOptions,
    stats: IngestStats,
    stop: asyncio.Event,
) -> str:
    """Run until the source ends (a video file: returns "ended") or `stop` is set ("stopped");
    every frame handed to the producer is then given `flush_timeout_s` to be acknowledged."""
    quiet_opencv()
    topic = TopicNames(settings.topic_prefix).images
    await check_topic(settings, topic)
    producer = create_producer(settings, client_id=f"{settings.topic_prefix}-ingest")
    await producer.start()
    try:
        return await run_source(producer, topic, spec, options, stats, stop)
    finally:
        # Bounded: aiokafka's stop() flushes what it still holds, which waits for a broker that
        # is down; what the flush above gave up on is counted already.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PRODUCER_STOP_S):
                await producer.stop()
        stats.state = "ended"


async def run_source(
    producer: AIOKafkaProducer,
    topic: str,
    spec: SourceSpec,
    options: IngestOptions,
    stats: IngestStats,
    stop: asyncio.Event,
) -> str:
    """One source through a started producer (which may serve others too: `mugpos streams
    run`), until it ends ("ended") or `stop` is set ("stopped"); then its frames handed over are
    given `flush_timeout_s` to be acknowledged. An error that ends the reader is raised."""
    change = ChangeFilter(options.change_threshold) if options.on_change else None
    sender = FrameSender(producer, topic, stats, max_in_flight=options.max_in_flight, change=change)
    sending = asyncio.create_task(sender.run(), name="ingest-send")
    reading = asyncio.create_task(
        READERS[spec.kind](spec, options, stats, sender), name="ingest-read"
    )
    stopping = asyncio.create_task(stop.wait(), name="ingest-stop")
    try:
        await asyncio.wait({reading, stopping, sending}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        for task in (reading, stopping, sending):
            task.cancel()
        await asyncio.gather(reading, stopping, sending, return_exceptions=True)
        raise
    ended = "ended" if reading.done() and not stop.is_set() else "stopped"
    stats.state = "stopping"
    for task in (reading, stopping):
        task.cancel()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await reading  # re-raises what ended a reader (a video that did not open)
        if sending.done():
            sending.result()  # the sender failed unexpectedly: named, not hidden
    except BaseException:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        raise
    await sender.close(options.flush_timeout_s)
    sending.cancel()  # ended already, unless the broker never answered
    await asyncio.gather(sending, return_exceptions=True)
    return ended
