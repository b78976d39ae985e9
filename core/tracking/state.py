"""What a source remembers between frames, as plain data that round-trips through MongoDB.

Times are frame times in seconds since the epoch (UTC): when the picture was taken if its sender
said so, else when it was submitted, else when the pipeline received it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.positioning.geometry import Box

# Request ids of the last frames applied: a redelivered frame is not counted twice.
REMEMBERED_FRAMES = 256
# Alert events kept after they were made: a redelivered frame publishes its events again.
REMEMBERED_ALERTS = 64


@dataclass(slots=True)
class Held:
    """One rule's outcome for one subject (a tracked mug, or the scene) over time."""

    failing: bool  # the outcome in force
    since: float  # when the outcome in force began
    pending_since: float | None = None  # when the other outcome was first seen, if it is now
    pending_frames: int = 0  # frames in a row showing the other outcome

    def lasted(self, now: float) -> float:
        return max(0.0, now - self.since)


@dataclass(slots=True)
class Track:
    """A mug followed across frames under one id, seen or (for a while) hidden."""

    track_id: str
    box: Box  # where it was last seen, in image px
    first_seen: float
    last_seen: float
    last_frame: int  # the source's frame count when it was last seen
    seen_frames: int = 0  # frames it was seen in (ByteTrack confirms a new track on its second)
    held: dict[str, Held] = field(default_factory=dict)  # rule id -> its outcome for this mug


@dataclass(slots=True)
class AlertMark:
    """An alert of one (rule, subject): open from `raised` to `resolved`. Kept after it resolves
    until the cooldown since it was raised is over, so a flapping subject raises it again only
    then."""

    key: str  # "{rule_id}/{subject}"
    open: bool
    raised_at: float
    raised: dict[str, Any]  # the `raised` event (schemas.messages.Alert, JSON mode)


@dataclass(slots=True)
class SourceState:
    source_id: str
    frames: int = 0
    frame_at: float | None = None  # the newest frame time applied
    next_track: int = 1
    tracks: dict[str, Track] = field(default_factory=dict)
    scene: dict[str, Held] = field(default_factory=dict)  # rule id -> scene-wide outcome
    applied: list[str] = field(default_factory=list)  # request ids, newest last
    alerts: dict[str, AlertMark] = field(default_factory=dict)  # by AlertMark.key
    recent_alerts: list[dict[str, Any]] = field(default_factory=list)  # events made, newest last

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Ids as values: MongoDB keys must not hold "." (rule ids and track ids may).
        data["tracks"] = list(data["tracks"].values())
        data["alerts"] = list(data["alerts"].values())
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceState:
        tracks = {}
        for raw in data.get("tracks", []):
            held = {k: Held(**v) for k, v in raw.get("held", {}).items()}
            track = Track(**{**raw, "box": tuple(raw["box"]), "held": held})
            tracks[track.track_id] = track
        return cls(
            source_id=data["source_id"],
            frames=int(data.get("frames", 0)),
            frame_at=data.get("frame_at"),
            next_track=int(data.get("next_track", 1)),
            tracks=tracks,
            scene={k: Held(**v) for k, v in data.get("scene", {}).items()},
            applied=list(data.get("applied", [])),
            alerts={m["key"]: AlertMark(**m) for m in data.get("alerts", [])},
            recent_alerts=list(data.get("recent_alerts", [])),
        )

    def seen(self, request_id: str) -> bool:
        return request_id in self.applied

    def remember(self, request_id: str) -> None:
        self.applied.append(request_id)
        del self.applied[:-REMEMBERED_FRAMES]

    def remember_alerts(self, events: list[dict[str, Any]]) -> None:
        self.recent_alerts.extend(events)
        del self.recent_alerts[:-REMEMBERED_ALERTS]
