"""At most one result per source per interval to a live client, the latest one.

A camera sampled several times a second, times a fleet of cameras, would flood a browser that can
only show the latest picture of each anyway. Per source, the first result goes out at once; those
that arrive within the interval after it replace one another, and the last is sent when the
interval is over, saying how many it stood for. Results of no particular source (one-off uploads:
`UNNAMED_SOURCES`) and other events are never held: each is someone's answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.topics import UNNAMED_SOURCES

Event = dict[str, Any]


@dataclass
class _Held:
    event: Event
    replaced: int = 0


@dataclass
class LatestPerSource:
    interval_s: float
    _sent_at: dict[str, float] = field(default_factory=dict)
    _held: dict[str, _Held] = field(default_factory=dict)

    def offer(self, event: Event, now: float) -> list[Event]:
        """What to send now for `event`: itself, or nothing (it is held, replacing any held one
        of its source)."""
        source = _source_of(event)
        if source is None:
            return [event]
        held = self._held.get(source)
        if held is not None:
            self._held[source] = _Held(event, held.replaced + 1)
            return []
        if now - self._sent_at.get(source, float("-inf")) >= self.interval_s:
            self._sent_at[source] = now
            return [event]
        self._held[source] = _Held(event)
        return []

    def due(self, now: float) -> list[Event]:
        """The held events whose interval is over, each marked with how many results it stands
        for (`coalesced`)."""
        ready = [s for s in self._held if now - self._sent_at[s] >= self.interval_s]
        out = []
        for source in ready:
            held = self._held.pop(source)
            self._sent_at[source] = now
            out.append({**held.event, "coalesced": held.replaced + 1})
        return out

    def next_due(self) -> float | None:
        """When the earliest held event is due (monotonic seconds), None when none is held."""
        if not self._held:
            return None
        return min(self._sent_at[s] for s in self._held) + self.interval_s


def _source_of(event: Event) -> str | None:
    if event.get("type") != "result":
        return None
    source = (event.get("data") or {}).get("source_id")
    return None if not source or source in UNNAMED_SOURCES else source
