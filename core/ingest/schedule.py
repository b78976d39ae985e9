"""When to sample: instants on a fixed grid (start, start + interval, …) of one timeline.

The timeline is the video's own for a file (its frames' times, however fast they are decoded), and
the monotonic clock for a live source. A frame is taken at the first frame at or after each
instant; instants with no frame (a gap in the stream, a slow reader) are skipped, never made up
later, so a stall does not turn into a burst."""

from __future__ import annotations

import math

# Frame times are computed as index / fps; a tolerance far below any frame interval keeps an
# instant that falls exactly on a frame (2.0 s at 10 fps) from being missed by rounding.
EPSILON_S = 1e-6


class SamplingSchedule:
    """Instants `start + k * interval` (k = 0, 1, …), computed from k (no accumulated error)."""

    def __init__(self, interval_s: float, start: float = 0.0) -> None:
        if interval_s <= 0:
            raise ValueError("the sampling interval must be more than 0")
        self.interval_s = interval_s
        self.start = start
        self._k = 0

    @property
    def next_at(self) -> float:
        """The next instant a frame is wanted at."""
        return self.start + self._k * self.interval_s

    def due(self, t: float) -> bool:
        """Whether a frame at time `t` is to be taken (it is at or past the next instant)."""
        return t + EPSILON_S >= self.next_at

    def taken(self, t: float) -> None:
        """A frame at `t` was taken: the next instant is the first on the grid after `t`."""
        passed = math.floor((t + EPSILON_S - self.start) / self.interval_s)
        self._k = max(self._k + 1, passed + 1)


def sampled_times(frame_times: list[float], interval_s: float) -> list[float]:
    """The times of the frames a schedule takes from a timeline (what a video file yields)."""
    schedule = SamplingSchedule(interval_s, frame_times[0] if frame_times else 0.0)
    taken = []
    for t in frame_times:
        if schedule.due(t):
            taken.append(t)
            schedule.taken(t)
    return taken
