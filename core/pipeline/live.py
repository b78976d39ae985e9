"""What an operator can change on a running worker, and the last minute of its batches."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field

WINDOW_S = 60.0


@dataclass
class LiveSettings:
    """Read by the stages on every batch, so a `set` command applies to the next batch."""

    max_batch: int
    confidence: float | None = None  # None: the settings' or the model's threshold
    # Cleared by `pause`: every stage holds the message in hand until it is set again, so nothing
    # is acknowledged (nothing skipped) and the partitions stop advancing.
    running: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the worker shuts down: stages take nothing new, so what is in hand can finish and
    # be committed before Faust stops.
    stopping: bool = False

    def __post_init__(self) -> None:
        self.running.set()


@dataclass
class BatchWindow:
    """Batches of the last minute: throughput, latency and the batch-size histogram."""

    _batches: deque[tuple[float, int, float]] = field(default_factory=deque)
    last_size: int | None = None

    def record(self, size: int, took_ms: float, now: float | None = None) -> None:
        self._batches.append((now if now is not None else time.monotonic(), size, took_ms))
        self.last_size = size

    def _recent(self, now: float) -> list[tuple[float, int, float]]:
        while self._batches and self._batches[0][0] < now - WINDOW_S:
            self._batches.popleft()
        return list(self._batches)

    def summary(self, now: float | None = None) -> dict[str, object]:
        recent = self._recent(now if now is not None else time.monotonic())
        images = sum(size for _, size, _ in recent)
        return {
            "images_last_minute": images,
            "throughput_per_s": round(images / WINDOW_S, 3),
            "batch_latency_ms_p50": round(statistics.median(ms for *_, ms in recent), 2)
            if recent
            else None,
            "batch_sizes": {str(k): v for k, v in sorted(Counter(s for _, s, _ in recent).items())},
            "last_batch_size": self.last_size,
        }
