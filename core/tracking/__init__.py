"""State over time, per source: mugs tracked across a source's frames and verdicts that change only
after the new outcome has lasted (a rule's `hold`)."""

from core.tracking.follow import FollowedFrame, follow_frame
from core.tracking.hold import hold_verdicts
from core.tracking.state import AlertMark, Held, SourceState, Track
from core.tracking.tracker import SourceTracker

__all__ = [
    "AlertMark",
    "FollowedFrame",
    "Held",
    "SourceState",
    "SourceTracker",
    "Track",
    "follow_frame",
    "hold_verdicts",
]
