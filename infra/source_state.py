"""Each tracked source's state (core.tracking): in this worker's memory from frame to frame, in
MongoDB (`source_states`, one document per source) from batch to batch.

Every save writes a fresh token. A worker that finds another token on the stored document at the
start of a batch (the source's partition was elsewhere meanwhile, or this worker restarted) drops
its in-memory tracker and resumes from the stored state, so tracks keep their ids and their held
verdicts whichever worker analyses the next frame.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import UpdateOne

from core.tracking import SourceState, SourceTracker
from infra.mongo import SOURCE_STATES

MAX_TRACKERS = 4096  # sources whose tracker one worker keeps in memory (least recent dropped)


class SourceStates:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self._states = db[SOURCE_STATES]
        self._trackers: OrderedDict[str, tuple[SourceTracker, str]] = OrderedDict()

    async def trackers(self, source_ids: Iterable[str]) -> dict[str, SourceTracker]:
        """A tracker for each source, current with the stored state."""
        wanted = sorted(set(source_ids))
        if not wanted:
            return {}
        docs = {
            d["_id"]: d
            async for d in self._states.find({"_id": {"$in": wanted}}, {"token": 1, "state": 1})
        }
        out = {}
        for source_id in wanted:
            doc = docs.get(source_id)
            held = self._trackers.get(source_id)
            if held is not None and doc is not None and doc.get("token") == held[1]:
                tracker = held[0]
            else:
                state = SourceState.from_dict(doc["state"]) if doc else SourceState(source_id)
                tracker = SourceTracker(state)
                self._keep(source_id, tracker, doc.get("token", "") if doc else "")
            out[source_id] = tracker
        return out

    async def save(self, trackers: dict[str, SourceTracker]) -> None:
        if not trackers:
            return
        now = datetime.now(UTC)
        tokens = {source_id: uuid.uuid4().hex for source_id in trackers}
        await self._states.bulk_write(
            [
                UpdateOne(
                    {"_id": source_id},
                    {
                        "$set": {
                            "state": tracker.state.to_dict(),
                            "token": tokens[source_id],
                            "updated_at": now,
                        }
                    },
                    upsert=True,
                )
                for source_id, tracker in trackers.items()
            ],
            ordered=False,
        )
        for source_id, tracker in trackers.items():
            self._keep(source_id, tracker, tokens[source_id])

    def _keep(self, source_id: str, tracker: SourceTracker, token: str) -> None:
        self._trackers[source_id] = (tracker, token)
        self._trackers.move_to_end(source_id)
        while len(self._trackers) > MAX_TRACKERS:
            self._trackers.popitem(last=False)

    async def stored(self, source_id: str) -> dict[str, Any] | None:
        """The stored state document (for the API), or None when the source has none."""
        return await self._states.find_one({"_id": source_id}, {"_id": 0, "token": 0})
