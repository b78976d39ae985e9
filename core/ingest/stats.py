"""What ingestion has done so far, for the live status line and the final summary. Counters are
written by one party each (the reader thread counts frames read, the sender sends and acks), and
only read by the status line, so no lock is needed for a display."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

_RATE_WINDOW_S = 5.0


@dataclass(slots=True)
class IngestStats:
    source_id: str
    started_at: float  # monotonic
    state: str = "starting"  # connecting, connected, reconnecting, reading, watching, ended
    frames_read: int = 0  # decoded or grabbed from the source (files: files read)
    sent: int = 0  # handed to the producer
    acked: int = 0  # acknowledged by the broker
    failed: int = 0  # the broker never acknowledged them
    unchanged: int = 0  # --on-change: skipped, too like the last frame sent
    dropped: int = 0  # live: a newer frame took its place while every send slot was busy
    downscaled: int = 0  # encoded over the inline limit, sent smaller
    skipped_files: int = 0  # folder: videos and unreadable files
    reconnects: int = 0  # live: the stream was lost and opened again
    lost: int = 0  # live: times the stream was lost
    last_frame_at: float | None = None  # monotonic time of the newest frame read
    _marks: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked - self.failed

    def frame_read(self, now: float) -> None:
        self.frames_read += 1
        self.last_frame_at = now

    def fps(self, now: float) -> float:
        """Frames read per second over about the last five seconds."""
        self._marks.append((now, self.frames_read))
        while len(self._marks) > 2 and now - self._marks[1][0] >= _RATE_WINDOW_S:
            self._marks.popleft()
        first_t, first_n = self._marks[0]
        return (self.frames_read - first_n) / (now - first_t) if now > first_t else 0.0

    def status_line(self, now: float) -> str:
        age = "-" if self.last_frame_at is None else f"{now - self.last_frame_at:.1f}s"
        return (
            f"{self.source_id} [{self.state}] {self.fps(now):.1f} fps read | sent {self.sent} "
            f"(acked {self.acked}, in flight {self.in_flight}) | unchanged {self.unchanged} | "
            f"dropped {self.dropped} | reconnects {self.reconnects} | last frame {age} ago"
        )

    def summary(self, now: float, ended: str) -> str:
        failed = f", failed {self.failed}" if self.failed else ""
        extra = "".join(
            f", {name} {value}"
            for name, value in (
                ("downscaled", self.downscaled),
                ("skipped files", self.skipped_files),
            )
            if value
        )
        return (
            f"ingest {self.source_id} {ended}: sent {self.sent}, acknowledged {self.acked}"
            f"{failed}, unchanged {self.unchanged}, dropped {self.dropped}, reconnects "
            f"{self.reconnects}{extra}; {self.frames_read} frames read in "
            f"{now - self.started_at:.1f} s"
        )
