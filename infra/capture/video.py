"""A video file, read as fast as the sender takes its frames but sampled on the video's own
timeline: with `--every 2s`, one frame per two seconds of video, however fast it decodes."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import cv2
import numpy as np

from core.ingest.schedule import SamplingSchedule


class VideoOpenError(OSError):
    """The file is missing or not a video OpenCV can read."""


class VideoFile:
    """Sequential reader: frames the schedule does not want are only grabbed, never converted."""

    def __init__(self, path: str) -> None:
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise VideoOpenError(f"cannot open {path} as a video")
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        # Frame times from the frame index when the rate is known (exact: frame 20 at 10 fps is
        # 2.0 s); otherwise from the container's timestamps.
        self.fps = fps if fps and math.isfinite(fps) and 0 < fps < 1000 else None
        self._index = 0
        self._lock = threading.Lock()  # the capture is never used by two threads at once
        self._stopped = threading.Event()

    def _time(self) -> float:
        if self.fps is not None:
            return self._index / self.fps
        return self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0

    def next_sample(
        self, schedule: SamplingSchedule, on_frame: Callable[[], None] = lambda: None
    ) -> tuple[float, np.ndarray] | None:
        """(video time in seconds, BGR pixels) of the next frame the schedule takes, or None at
        the end of the file or after stop(). Blocking: run it in a thread. `on_frame` is called
        per frame read."""
        with self._lock:
            return self._next_sample(schedule, on_frame)

    def _next_sample(
        self, schedule: SamplingSchedule, on_frame: Callable[[], None]
    ) -> tuple[float, np.ndarray] | None:
        while not self._stopped.is_set() and self._capture.grab():
            t = self._time()
            self._index += 1
            on_frame()
            if not schedule.due(t):
                continue
            ok, pixels = self._capture.retrieve()
            if not ok or pixels is None:
                continue  # a frame that does not decode: take the next one
            schedule.taken(t)
            return t, pixels
        return None

    def stop(self) -> None:
        """Any thread: make a running next_sample() return None after its current frame."""
        self._stopped.set()

    def close(self) -> None:
        """Blocking until a running next_sample() has returned (call stop() first)."""
        with self._lock:
            self._capture.release()
