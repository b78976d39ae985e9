"""A live source (RTSP, HTTP/MJPEG, a camera device): a reader thread reads continuously and
keeps only the newest frame.

OpenCV's VideoCapture buffers decoded frames; reading one only when a sample is due would hand
out a frame seconds old. So a thread reads every frame as it comes and keeps the latest, and each
sampling instant takes that one. Opening and reading have timeouts (an unplugged camera or a dead
network path never blocks forever); a lost stream is opened again with capped, jittered
exponential backoff (stamina), and each return counts as a reconnect."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import cv2
import numpy as np
import stamina

from core.ingest.source import SourceKind, SourceSpec
from core.ingest.stats import IngestStats
from core.ingest.wire import capture_options

log = logging.getLogger(__name__)
T = TypeVar("T")
CAPTURE_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
THREAD_PREFIX = "ingest-capture-"
# Backoff between attempts to open a lost stream: 0.5 s doubling to 10 s, with up to 1 s jitter
# (cameras restarting together are not all asked again at the same instant).
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
BACKOFF_JITTER_S = 1.0


def capture_threads_alive() -> bool:
    """Whether a capture thread is still running (stuck in a driver call past its timeouts)."""
    return any(t.name.startswith(THREAD_PREFIX) and t.is_alive() for t in threading.enumerate())


class _CaptureOptions:
    """FFmpeg reads its options from one process-wide variable (CAPTURE_OPTIONS_ENV) when a
    capture opens. Streams with the same RTSP transport (or none: HTTP) open side by side; one
    with the other transport waits until those opens are done (`mugpos streams run` reads many
    streams in one process)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._value: str | None = None
        self._opening = 0

    @contextmanager
    def using(self, rtsp_transport: str | None) -> Iterator[None]:
        if rtsp_transport is None:
            yield
            return
        with self._changed:
            while self._opening and self._value != rtsp_transport:
                self._changed.wait()
            if self._value != rtsp_transport:
                os.environ[CAPTURE_OPTIONS_ENV] = capture_options(
                    os.environ.get(CAPTURE_OPTIONS_ENV), rtsp_transport
                )
                self._value = rtsp_transport
            self._opening += 1
        try:
            yield
        finally:
            with self._changed:
                self._opening -= 1
                self._changed.notify_all()


_RTSP_OPTIONS = _CaptureOptions()


class StreamUnavailable(OSError):
    """The stream could not be opened (yet)."""


@dataclass(frozen=True, slots=True)
class LiveFrame:
    seq: int  # increases with every frame read, across reconnects
    pixels: np.ndarray
    captured_at: datetime


def _in_daemon_thread(
    work: Callable[[], T], name: str, threads: set[threading.Thread]
) -> asyncio.Future[T]:
    """`work` on a daemon thread of its own (added to `threads` while it runs): a capture blocked
    in a driver call must not keep the process from exiting (the default executor's threads are
    joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        result, error = None, None
        try:
            result = work()
        except BaseException as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
        finally:
            threads.discard(threading.current_thread())

    thread = threading.Thread(target=target, name=name, daemon=True)
    threads.add(thread)
    thread.start()
    return future


class LiveStream:
    """Connects, reads on a thread, keeps the newest frame, reconnects; `run()` until cancelled."""

    def __init__(
        self,
        spec: SourceSpec,
        stats: IngestStats,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        rtsp_transport: str = "tcp",
    ) -> None:
        self.spec = spec
        self.stats = stats
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._lock = threading.Lock()
        self._latest: LiveFrame | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._threads: set[threading.Thread] = set()
        # TCP by default: over UDP a lossy network smears frames, and many NATs and firewalls
        # drop RTP over UDP altogether.
        self.rtsp_transport = rtsp_transport

    def latest(self) -> LiveFrame | None:
        with self._lock:
            return self._latest

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> bool:
        """Blocking: wait for the reader threads to end (each read is bounded by the read
        timeout, each open by the open timeout); False if one is still stuck in a driver.

        This matters at exit: CPython ends a daemon thread that comes back from C code during
        interpreter shutdown with pthread_exit, and unwinding through OpenCV's C++ frames then
        aborts the process ("FATAL: exception not rethrown")."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in list(self._threads))

    def _open(self) -> cv2.VideoCapture:
        """Blocking; bounded by the open timeout (FFmpeg sources)."""
        if self.spec.kind is SourceKind.DEVICE:
            where = self.spec.location
            capture = cv2.VideoCapture(int(where) if where.isdigit() else where)
        else:
            timeouts = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(self.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self.read_timeout_s * 1000),
            ]
            with _RTSP_OPTIONS.using(
                self.rtsp_transport if self.spec.kind is SourceKind.RTSP else None
            ):
                capture = cv2.VideoCapture(self.spec.location, cv2.CAP_FFMPEG, timeouts)
        if not capture.isOpened():
            capture.release()
            raise StreamUnavailable(f"cannot open {self.spec.shown()}")
        if self.spec.kind is SourceKind.DEVICE:
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2: fewer stale frames queued
        return capture

    def _read_until_lost(self, capture: cv2.VideoCapture) -> None:
        """Blocking: read every frame, keep the newest, until a read fails or stop()."""
        # A read that ran into the timeout means the stream stalled. OpenCV's FFmpeg backend
        # then still hands out what its decoder holds, one frame per timed-out read (seen with
        # RTSP over UDP): pictures from before the stall, stamped as new. So a stall ends the
        # connection at once.
        stalled_s = 0.9 * self.read_timeout_s
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                ok, pixels = capture.read()
                now = time.monotonic()
                if not ok or pixels is None:
                    return
                if now - began >= stalled_s and self.spec.kind is not SourceKind.DEVICE:
                    log.debug("a read took %.1f s: the stream stalled", now - began)
                    return
                self._seq += 1
                frame = LiveFrame(self._seq, pixels, datetime.now(UTC))
                with self._lock:
                    self._latest = frame
                self.stats.frame_read(now)
        finally:
            capture.release()

    async def _connect(self, reconnecting: bool) -> cv2.VideoCapture:
        async for attempt in stamina.retry_context(
            on=StreamUnavailable,
            attempts=None,
            timeout=None,
            wait_initial=BACKOFF_INITIAL_S,
            wait_max=BACKOFF_MAX_S,
            wait_jitter=BACKOFF_JITTER_S,
        ):
            with attempt:
                self.stats.state = "reconnecting" if reconnecting else "connecting"
                return await _in_daemon_thread(self._open, f"{THREAD_PREFIX}open", self._threads)
        raise AssertionError("unreachable: the retries are unbounded")

    async def run(self) -> None:
        """Until cancelled: connect (with backoff), read until the stream is lost, again."""
        connected_before = False
        try:
            while not self._stop.is_set():
                capture = await self._connect(connected_before)
                if connected_before:
                    self.stats.reconnects += 1
                    log.warning("%s: reconnected", self.spec.shown())
                connected_before = True
                self.stats.state = "connected"
                await _in_daemon_thread(
                    lambda c=capture: self._read_until_lost(c),
                    f"{THREAD_PREFIX}read",
                    self._threads,
                )
                if not self._stop.is_set():
                    self.stats.lost += 1
                    self.stats.state = "reconnecting"
                    log.warning("%s: stream lost; reconnecting", self.spec.shown())
        finally:
            self._stop.set()
