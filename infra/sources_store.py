"""Sources in MongoDB with versions, and each process's cache of their analysis setup.

Like rules, every write is a new version document (`source_id`, `version`) and nothing is
overwritten; deleting writes a tombstone version, so the history (and which version analysed
which image) stays readable. Workers keep each source's `SourceSetup` in process and drop it when
a write is announced (`infra.change_feed`), so an edit reaches running workers within a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from core.sources import SourceSetup, SourceSpec, default_setup, source_setup
from infra.change_feed import ChangeFeed
from infra.mongo import SOURCES

log = logging.getLogger(__name__)
# A setup is also re-read after this long: the safety net for an announcement that never came.
SETUP_TTL_S = 300.0


class SourceNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class StoredSource:
    source_id: str
    version: int
    spec: SourceSpec
    created_at: datetime
    created_by: str
    deleted: bool = False

    def document(self) -> dict[str, object]:
        return {
            "source_id": self.source_id,
            "version": self.version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "deleted": self.deleted,
            "spec": self.spec.model_dump(mode="json"),
        }

    @classmethod
    def from_document(cls, doc: dict) -> StoredSource:
        return cls(
            doc["source_id"],
            int(doc["version"]),
            SourceSpec.model_validate(doc.get("spec") or {}),
            doc["created_at"],
            doc.get("created_by", ""),
            bool(doc.get("deleted", False)),
        )


class SourcesRepository:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self._sources = db[SOURCES]

    async def put(self, source_id: str, spec: SourceSpec, user: str) -> StoredSource:
        """A new version (version 1 creates the source). Raises SourceSetupError for a
        calibration the analysis could not use."""
        source_setup(source_id, 0, spec)
        return await self._write(source_id, spec, user, deleted=False)

    async def delete(self, source_id: str, user: str) -> StoredSource:
        current = await self.get(source_id)
        return await self._write(source_id, current.spec, user, deleted=True)

    async def _write(
        self, source_id: str, spec: SourceSpec, user: str, *, deleted: bool
    ) -> StoredSource:
        for _ in range(5):  # two concurrent writes cannot both take the same version
            newest = await self._newest(source_id)
            version = int(newest["version"]) + 1 if newest else 1
            stored = StoredSource(source_id, version, spec, datetime.now(UTC), user, deleted)
            try:
                await self._sources.insert_one(stored.document())
                return stored
            except DuplicateKeyError:
                continue
        raise RuntimeError(f"source {source_id}: too many concurrent edits")

    async def _newest(self, source_id: str) -> dict | None:
        return await self._sources.find_one(
            {"source_id": source_id}, sort=[("version", DESCENDING)]
        )

    async def get(self, source_id: str, version: int | None = None) -> StoredSource:
        """The source as it is now (a deleted one is not found), or as it was at `version`."""
        if version is None:
            doc = await self._newest(source_id)
            if doc is None or doc.get("deleted"):
                raise SourceNotFound(f"no source {source_id}")
        else:
            doc = await self._sources.find_one({"source_id": source_id, "version": version})
            if doc is None:
                raise SourceNotFound(f"no source {source_id} version {version}")
        return StoredSource.from_document(doc)

    async def history(self, source_id: str) -> list[StoredSource]:
        docs = (
            await self._sources.find({"source_id": source_id})
            .sort("version", DESCENDING)
            .to_list(None)
        )
        if not docs:
            raise SourceNotFound(f"no source {source_id}")
        return [StoredSource.from_document(d) for d in docs]

    async def latest(self) -> list[StoredSource]:
        """Every source as it is now, by id; deleted ones left out."""
        docs = (
            await self._sources.find({})
            .sort([("source_id", 1), ("version", DESCENDING)])
            .to_list(None)
        )
        newest: dict[str, dict] = {}
        for doc in docs:
            newest.setdefault(doc["source_id"], doc)
        return [StoredSource.from_document(d) for d in newest.values() if not d.get("deleted")]


class SourceCache:
    """Each source's analysis setup, in process; MongoDB is read once per source and change."""

    def __init__(self, repository: SourcesRepository, redis: Redis | None, prefix: str) -> None:
        self._repository = repository
        self._feed = ChangeFeed(redis, f"{prefix}:sources:changed", "sources")
        self._setups: dict[str, tuple[SourceSetup, float]] = {}

    async def setup(self, source_id: str) -> SourceSetup:
        cached = self._setups.get(source_id)
        if cached is not None and time.monotonic() - cached[1] < SETUP_TTL_S:
            return cached[0]
        setup = await self._load(source_id)
        self._setups[source_id] = (setup, time.monotonic())
        return setup

    async def _load(self, source_id: str) -> SourceSetup:
        try:
            stored = await self._repository.get(source_id)
        except SourceNotFound:
            return default_setup(source_id)
        except ValueError as exc:  # a document edited by hand into something unreadable
            log.warning("source %s cannot be read (%s); using defaults", source_id, exc)
            return default_setup(source_id)
        try:
            return source_setup(source_id, stored.version, stored.spec)
        except ValueError as exc:
            log.warning(
                "source %s version %s unusable (%s); using defaults", source_id, stored.version, exc
            )
            return default_setup(source_id)

    async def publish_change(self, source_id: str) -> None:
        self._setups.pop(source_id, None)
        await self._feed.announce(source_id.encode())

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Run until cancelled: drop a source's setup when a change to it is announced."""
        await self._feed.follow(self._changed, self._setups.clear, ready)

    async def _changed(self, payload: bytes) -> None:
        self._setups.pop(payload.decode("utf-8", "replace"), None)
