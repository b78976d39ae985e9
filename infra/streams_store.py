"""Camera streams managed through the API (`source_streams`, one document per source id): what
to read and how to sample it, written by the API; and the stream's health, written by the
streams service (`mugpos streams run`, infra.capture.service) every 2 s and on state changes.

The URL is stored as given (an RTSP camera's password included: the service needs it); whatever
shows it to a person masks the password (`core.ingest.source.mask_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ReturnDocument

from infra.mongo import SOURCE_STREAMS

StreamState = Literal["connecting", "connected", "reconnecting", "stopped", "failed"]
STREAM_STATES: tuple[StreamState, ...] = (
    "connecting",
    "connected",
    "reconnecting",
    "stopped",
    "failed",
)
SPEC_FIELDS = ("url", "every_s", "on_change", "change_threshold", "rtsp_transport")


@dataclass(frozen=True, slots=True)
class StoredStream:
    source_id: str
    url: str  # as given: may hold a password
    every_s: float
    on_change: bool
    change_threshold: int
    rtsp_transport: str
    created_at: datetime
    updated_at: datetime  # also the spec's identity: the service restarts a stream when it moves
    updated_by: str | None
    health: dict[str, Any] | None = None  # None until the service has picked the stream up

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> StoredStream:
        return cls(
            doc["_id"],
            doc["url"],
            float(doc["every_s"]),
            bool(doc["on_change"]),
            int(doc["change_threshold"]),
            doc.get("rtsp_transport", "tcp"),
            doc["created_at"],
            doc["updated_at"],
            doc.get("updated_by"),
            doc.get("health"),
        )


class StreamsStore:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self._streams = db[SOURCE_STREAMS]

    async def put(
        self, source_id: str, spec: dict[str, Any], by: str | None
    ) -> tuple[StoredStream, bool]:
        """Create or replace a stream's spec (its health is reset: it describes the old one);
        returns the stream and whether it was created."""
        now = datetime.now(UTC)
        fields = {name: spec[name] for name in SPEC_FIELDS}
        doc = await self._streams.find_one_and_update(
            {"_id": source_id},
            {
                "$set": {**fields, "updated_at": now, "updated_by": by, "health": None},
                "$setOnInsert": {"created_at": now},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        stored = StoredStream.from_document(doc)
        return stored, stored.created_at == stored.updated_at

    async def get(self, source_id: str) -> StoredStream | None:
        doc = await self._streams.find_one({"_id": source_id})
        return StoredStream.from_document(doc) if doc else None

    async def list(self, state: StreamState | None = None) -> list[StoredStream]:
        """Every stream by source id, or those whose health is in `state`."""
        query = {} if state is None else {"health.state": state}
        return [StoredStream.from_document(d) async for d in self._streams.find(query).sort("_id")]

    async def delete(self, source_id: str) -> bool:
        return (await self._streams.delete_one({"_id": source_id})).deleted_count == 1

    async def write_health(
        self, source_id: str, updated_at: datetime, health: dict[str, Any]
    ) -> bool:
        """The health of the stream as specified at `updated_at`; False (nothing written) when
        the stream was deleted or its spec replaced since."""
        reply = await self._streams.update_one(
            {"_id": source_id, "updated_at": updated_at}, {"$set": {"health": health}}
        )
        return reply.matched_count == 1
