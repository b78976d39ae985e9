"""Where a finished result is kept: MongoDB (the record), the object store (`result.json`) and a
Redis copy for fast reads, written so that a redelivered input never changes a settled result.

A request id is settled by its first `ok` result, or by its first `rejected`/`failed` one until an
`ok` result supersedes it (a dead letter replayed once its cause was fixed). Anything later is a
redelivery (at-least-once): `save` returns the stored result so the caller republishes exactly
what is stored, and the object key of `result.json` (which carries the completion date) never
forks. MongoDB is written first: after a crash the document is what redelivery finds and
completes, by writing the same `result.json` again and publishing it. Redis is a cache: it is
written last and its failures are logged, never raised.

Reading one result is here too (`find`): Redis first, then MongoDB; a Redis failure falls back to
MongoDB. So is an upload's `pending` state (`mark_pending`): the API writes a Redis marker at
once and the MongoDB placeholder in batches, off the request path; the sink's result replaces
both. Listings over many results are queries in infra.results_history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

import orjson
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.mongo import ANALYSIS_RESULTS
from infra.object_store import ObjectStore
from infra.object_store.keys import result_key
from infra.results_history import (
    STORED_PROJECTION,
    pending_document,
    result_document,
)
from infra.write_behind import WriteBehind
from schemas.messages import AnalysisResult

log = logging.getLogger(__name__)

# The stored statuses a new result of each status may replace.
_REPLACES: dict[str, tuple[str, ...]] = {
    "ok": ("pending", "rejected", "failed"),
    "rejected": ("pending",),
    "failed": ("pending",),
    "expired": ("pending",),
}
_DUPLICATE_KEY = 11000
_PARALLEL_PUTS = 8


def _no_step(name: str) -> AbstractContextManager[object]:
    return nullcontext()


def result_cache_key(prefix: str, request_id: str) -> str:
    """The Redis key of a result's cached copy (written by the sink, read by the API)."""
    return f"{prefix}:result:{request_id}"


def pending_marker_key(prefix: str, request_id: str) -> str:
    """The Redis key saying "accepted, result not stored yet" (written by the API at upload)."""
    return f"{prefix}:pending:{request_id}"


def _pending_view(document: dict[str, Any]) -> dict[str, Any]:
    """What a reader learns of an unfinished request, wherever its pending state was found."""
    return {
        "request_id": document["request_id"],
        "source_id": document["source_id"],
        "status": "pending",
        "submitted_at": document["submitted_at"],
    }


def _result(document: dict[str, Any]) -> AnalysisResult:
    return AnalysisResult.model_validate(
        {k: v for k, v in document.items() if k in AnalysisResult.model_fields}
    )


class ResultStore:
    def __init__(
        self,
        db: AsyncIOMotorDatabase,
        store: ObjectStore,
        redis: Redis | None,
        prefix: str,
        cache_ttl_s: int,
        *,
        on_cache_lookup: Callable[[str], None] | None = None,
    ) -> None:
        """`on_cache_lookup` hears the Redis outcome of every `find`: hit, miss or error."""
        self._results = db[ANALYSIS_RESULTS]
        self._store = store
        self._redis = redis
        self._prefix = prefix
        self._cache_ttl_s = cache_ttl_s
        self._on_cache_lookup = on_cache_lookup
        self._placeholders: WriteBehind[dict[str, Any]] | None = None
        self.cache_failures = 0

    async def save(
        self,
        results: Sequence[AnalysisResult],
        step: Callable[[str], AbstractContextManager[object]] | None = None,
    ) -> list[AnalysisResult]:
        """Store a batch; returns, per input, the result that is now stored for its request id.
        `step(name)` wraps each write (`sink mongodb`, `sink object store`, `sink redis`): the
        caller's tracing spans.

        Raises the driver's error when MongoDB or the object store fails: nothing is then
        published, and the redelivered inputs complete the batch."""
        step = step or _no_step
        with step("sink mongodb"):
            stored = await self._settled([r.request_id for r in results])
            writes: dict[str, AnalysisResult] = {}
            superseded: list[str] = []
            for result in results:
                previous = stored.get(result.request_id)
                if previous is not None and previous.status not in _REPLACES[result.status]:
                    continue
                stored[result.request_id] = writes[result.request_id] = result
                if previous is not None and previous.status != "pending":
                    old = result_key(previous.request_id, "result.json", previous.completed_at)
                    if old != result_key(result.request_id, "result.json", result.completed_at):
                        superseded.append(old)
            if writes:
                await self._write_documents(list(writes.values()), stored)
        final = [stored[r.request_id] for r in results]
        with step("sink object store"):
            await self._put_objects({r.request_id: r for r in final}.values(), superseded)
        if self._redis is not None:
            with step("sink redis"):
                await self._cache(final)
        return final

    async def _settled(self, request_ids: list[str]) -> dict[str, AnalysisResult]:
        """The results stored so far. An upload's `pending` placeholder is none (it is no
        AnalysisResult): every status's conditional upsert replaces it."""
        cursor = self._results.find({"request_id": {"$in": request_ids}}, {"_id": 0})
        return {
            doc["request_id"]: _result(doc) async for doc in cursor if doc["status"] != "pending"
        }

    async def _write_documents(
        self, writes: list[AnalysisResult], stored: dict[str, AnalysisResult]
    ) -> None:
        """Conditional upserts: another worker that settled a request id first keeps it (its
        insert makes ours fail on the unique index, and we adopt what it stored)."""
        operations = [
            UpdateOne(
                {"request_id": r.request_id, "status": {"$in": list(_REPLACES[r.status])}},
                {"$set": result_document(r)},
                upsert=True,
            )
            for r in writes
        ]
        try:
            await self._results.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != _DUPLICATE_KEY for e in errors):
                raise
            lost = [writes[e["index"]].request_id for e in errors]
            stored.update(await self._settled(lost))

    async def _put_objects(self, results: Any, superseded: list[str]) -> None:
        limit = asyncio.Semaphore(_PARALLEL_PUTS)

        async def put(result: AnalysisResult) -> None:
            async with limit:
                await self._store.put(
                    result_key(result.request_id, "result.json", result.completed_at),
                    result.model_dump_json().encode(),
                    content_type="application/json",
                )

        async def delete(key: str) -> None:
            async with limit:
                await self._store.delete(key)

        await asyncio.gather(*(put(r) for r in results), *(delete(k) for k in superseded))

    async def _cache(self, results: list[AnalysisResult]) -> None:
        if self._redis is None:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for result in results:
                    pipe.set(
                        result_cache_key(self._prefix, result.request_id),
                        result.model_dump_json().encode(),
                        ex=self._cache_ttl_s,
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self.cache_failures += 1
            log.warning("result cache not written (%s); results are stored and published", exc)

    # --- Reading one result, and an upload's pending state -------------------------------------

    async def find(self, request_id: str) -> dict[str, Any] | None:
        """The result; `{request_id, source_id, status: "pending", submitted_at}` for an accepted
        upload not finished yet; None for a request id nobody accepted.

        Redis first (the sink's copy and the upload's marker, one round trip), then MongoDB (the
        record, or its placeholder), then this process's placeholders not written yet."""
        cached, marker = await self._cached(request_id)
        if cached is not None:
            return orjson.loads(cached)
        stored = await self.find_stored(request_id)
        if stored is not None:
            return _pending_view(stored) if stored.get("status") == "pending" else stored
        if marker is not None:
            return _pending_view(orjson.loads(marker))
        unwritten = self._placeholders.get(request_id) if self._placeholders else None
        return _pending_view(unwritten) if unwritten is not None else None

    async def find_stored(self, request_id: str) -> dict[str, Any] | None:
        """MongoDB alone: the record of a request id (or its placeholder), cache or no cache."""
        return await self._results.find_one({"request_id": request_id}, STORED_PROJECTION)

    async def _cached(self, request_id: str) -> tuple[bytes | None, bytes | None]:
        """(cached result, pending marker) from Redis; (None, None) without it or on a failure:
        Redis is a cache, MongoDB answers instead."""
        if self._redis is None:
            return None, None
        try:
            cached, marker = await self._redis.mget(
                result_cache_key(self._prefix, request_id),
                pending_marker_key(self._prefix, request_id),
            )
        except (RedisError, OSError) as exc:
            self._lookup("error")
            log.debug("result cache not read (%s); reading MongoDB", exc)
            return None, None
        self._lookup("hit" if cached is not None else "miss")
        return cached, marker

    def _lookup(self, outcome: str) -> None:
        if self._on_cache_lookup is not None:
            self._on_cache_lookup(outcome)

    async def mark_pending(self, request_id: str, source_id: str, submitted_at: datetime) -> None:
        """An upload accepted (its image already durable in Kafka): a Redis marker now, so any
        API process answers `pending` at once, and the MongoDB placeholder (listed under
        `status=pending`) within ~50 ms, batched with others'. Neither raises: the result is
        stored and published whether or not they were written, and replaces them."""
        document = pending_document(request_id, source_id, submitted_at)
        if self._placeholders is None:
            self._placeholders = WriteBehind(
                "pending placeholders", self._write_placeholders, lambda d: d["request_id"]
            )
        self._placeholders.add(document)
        if self._redis is None:
            return
        try:
            await self._redis.set(
                pending_marker_key(self._prefix, request_id),
                orjson.dumps(_pending_view(document)),
                ex=self._cache_ttl_s,
            )
        except (RedisError, OSError) as exc:
            self.cache_failures += 1
            log.debug("pending marker not written (%s); the placeholder follows", exc)

    async def _write_placeholders(self, documents: list[dict[str, Any]]) -> None:
        """Inserts (half the work of upserts for secantusdb). A placeholder whose request id is
        already stored — its result came first, or a retried batch wrote it — is refused by the
        unique index and left out: a placeholder never replaces anything."""
        try:
            await self._results.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def close(self) -> None:
        """Write the placeholders still buffered (the worker's store has none)."""
        if self._placeholders is not None:
            await self._placeholders.close()
