"""One frame of a tracked source: its mugs to tracks, its verdicts through the rules' holds, and
what the result says about the source's tracks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.positioning import SceneFacts
from core.rules import CompiledRule, Verdict
from core.tracking.hold import hold_verdicts
from core.tracking.state import Held, SourceState
from core.tracking.tracker import SourceTracker


@dataclass(frozen=True, slots=True)
class FollowedFrame:
    verdicts: list[Verdict]
    tracks: list[dict[str, Any]]  # schemas.messages.TrackOut fields
    tracked: dict[int, str]  # {mug index: track id} of this frame (empty when redelivered)
    at: float  # the frame's time on the source's clock


def follow_frame(
    tracker: SourceTracker,
    request_id: str,
    facts: SceneFacts,
    verdicts: Sequence[Verdict],
    rules: Mapping[str, CompiledRule],
    image_size: tuple[int, int],
    frame_time: float,
) -> FollowedFrame:
    """Advance the source by one frame. A frame already applied (redelivered after a failure)
    is judged on the state as it is, without advancing it; a frame older than the newest one
    applied counts as taken at that time (clocks of cameras drift)."""
    state = tracker.state
    now = max(frame_time, state.frame_at or frame_time)
    advance = not state.seen(request_id)
    tracked: dict[int, str] = {}
    if advance:
        tracked = tracker.update(
            [m.box for m in facts.mugs], [m.confidence for m in facts.mugs], image_size, now
        )
        state.frame_at = now
        state.remember(request_id)
    held = hold_verdicts(verdicts, rules, state, tracked, now, advance=advance)
    return FollowedFrame(held, track_report(state, tracked, now), tracked, now)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def held_report(held: Held, now: float) -> dict[str, Any]:
    return {
        "failing": held.failing,
        "since": _when(held.since),
        "for_s": round(held.lasted(now), 3),
    }


def track_report(state: SourceState, tracked: Mapping[int, str], now: float) -> list[dict]:
    """Every track of the source as `schemas.messages.TrackOut` fields; `tracked`: this frame's
    {mug index: track id} (the others are hidden)."""
    index_of = {track_id: index for index, track_id in tracked.items()}
    return [
        {
            "track_id": t.track_id,
            "mug": index_of.get(t.track_id),
            "box": t.box,
            "first_seen": _when(t.first_seen),
            "last_seen": _when(t.last_seen),
            "seen_for_s": round(now - t.first_seen, 3),
            "held": {rule_id: held_report(h, now) for rule_id, h in t.held.items()},
        }
        for t in state.tracks.values()
    ]
