"""Mugs followed across one source's frames with ultralytics' ByteTrack, under ids that outlive
the tracker.

ByteTrack (Kalman prediction, two-stage IoU association, lost tracks kept for `TRACK_BUFFER`
frames) does the association; this wrapper gives its tracks the source's own ids and keeps them
in `SourceState`, which is stored between batches. A tracker built on a stored state (after a
restart, or when the source's partition moved to this worker) starts ByteTrack afresh and adopts
the stored tracks by overlap, so a mug keeps its id and its held verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ultralytics.engine.results import Boxes
from ultralytics.trackers.byte_tracker import BYTETracker
from ultralytics.utils import IterableSimpleNamespace

from core.positioning.geometry import Box, iou
from core.tracking.state import SourceState, Track

# ultralytics' bytetrack.yaml defaults, as data: the file is not read at run time.
TRACK_BUFFER = 30  # frames a hidden mug keeps its track (and its held verdicts)
BYTETRACK = IterableSimpleNamespace(
    tracker_type="bytetrack",
    track_high_thresh=0.25,
    track_low_thresh=0.1,
    new_track_thresh=0.25,
    track_buffer=TRACK_BUFFER,
    match_thresh=0.8,
    fuse_score=True,
)
ADOPT_IOU = 0.3  # a new ByteTrack track this much over a stored one is that mug again


class SourceTracker:
    """One source's tracker; frames must come in order (the pipeline keys them by source)."""

    def __init__(self, state: SourceState) -> None:
        self.state = state
        self._bytetrack = BYTETracker(BYTETRACK)
        self._ids: dict[int, str] = {}  # ByteTrack's id -> the source's track id
        self._times: dict[int, float] = {}  # ByteTrack's frame number -> frame time

    def update(
        self,
        boxes: Sequence[Box],
        confidences: Sequence[float],
        image_size: tuple[int, int],
        now: float,
    ) -> dict[int, str]:
        """Advance one frame with its mugs' boxes; {mug index: track id} for the mugs tracked
        (a mug seen for the first time is tracked from its second frame, as ByteTrack confirms
        new tracks)."""
        state = self.state
        state.frames += 1
        rows = np.asarray(
            [[*box, conf, 0.0] for box, conf in zip(boxes, confidences, strict=True)],
            dtype=np.float32,
        ).reshape(-1, 6)
        width, height = image_size
        tracked = self._bytetrack.update(Boxes(rows, (height, width)))
        frame = self._bytetrack.frame_id
        self._times[frame] = now
        strack = {s.track_id: s for s in self._bytetrack.tracked_stracks}
        found: dict[int, str] = {}
        for row in tracked:
            index, byte_id = int(row[7]), int(row[4])
            track_id = self._ids.get(byte_id)
            if track_id is None:  # confirmed now, first seen (unconfirmed) a frame or more ago
                start = strack[byte_id].start_frame
                track_id = self._adopt(boxes[index], found.values(), self._times.get(start, now))
                self._ids[byte_id] = track_id
                state.tracks[track_id].seen_frames += frame - start
            found[index] = track_id
            track = state.tracks[track_id]
            track.box, track.last_seen, track.last_frame = tuple(boxes[index]), now, state.frames
            track.seen_frames += 1
        self._forget(state)
        self._times = {f: t for f, t in self._times.items() if frame - f <= TRACK_BUFFER}
        return found

    def _adopt(self, box: Box, taken: Iterable[str], first_seen: float) -> str:
        """The stored track this new one continues (best overlap, not already claimed this
        frame or by a live ByteTrack track), else a new track."""
        live = set(self._ids.values()) | set(taken)
        candidates = [
            (iou(box, t.box), t.track_id)
            for t in self.state.tracks.values()
            if t.track_id not in live
        ]
        overlap, best = max(candidates, default=(0.0, ""))
        if overlap >= ADOPT_IOU:
            return best
        state = self.state
        track_id = f"t{state.next_track}"
        state.next_track += 1
        state.tracks[track_id] = Track(track_id, tuple(box), first_seen, first_seen, state.frames)
        return track_id

    def _forget(self, state: SourceState) -> None:
        """Drop tracks hidden for longer than ByteTrack keeps them."""
        for track_id in [
            t.track_id for t in state.tracks.values() if state.frames - t.last_frame > TRACK_BUFFER
        ]:
            del state.tracks[track_id]
        self._ids = {k: v for k, v in self._ids.items() if v in state.tracks}
