"""Where a finished result is kept: MongoDB (the record), the object store (`result.json`) and a
Redis copy for fast reads, written so that a redelivered input never changes a settled result.

A request id is settled by its first `ok` result, or by its first `rejected`/`failed` one until an
`ok` result supersedes it (a dead letter replayed once its cause was fixed). Anything later is a
redelivery (at-least-once): `save` returns the stored result so the caller republishes exactly
what is stored, and the object key of `result.json` (which carries the completion date) never
forks. MongoDB is written first: after a crash the document is what redelivery finds and
completes, by writing the same `result.json` again and publishing it. Redis is a cache: it is
written last and its failures are logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.mongo import ANALYSIS_RESULTS
from infra.object_store import ObjectStore
from infra.object_store.keys import result_key
from infra.results_history import result_document
from schemas.messages import AnalysisResult

log = logging.getLogger(__name__)

# The stored statuses a new result of each status may replace.
_REPLACES: dict[str, tuple[str, ...]] = {
    "ok": ("pending", "rejected", "failed"),
    "rejected": ("pending",),
    "failed": ("pending",),
}
_DUPLICATE_KEY = 11000
_PARALLEL_PUTS = 8


def result_cache_key(prefix: str, request_id: str) -> str:
    """The Redis key of a result's cached copy (written by the sink, read by the API)."""
    return f"{prefix}:result:{request_id}"


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
    ) -> None:
        self._results = db[ANALYSIS_RESULTS]
        self._store = store
        self._redis = redis
        self._prefix = prefix
        self._cache_ttl_s = cache_ttl_s
        self.cache_failures = 0

    async def save(self, results: Sequence[AnalysisResult]) -> list[AnalysisResult]:
        """Store a batch; returns, per input, the result that is now stored for its request id.

        Raises the driver's error when MongoDB or the object store fails: nothing is then
        published, and the redelivered inputs complete the batch."""
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
        await self._put_objects({r.request_id: r for r in final}.values(), superseded)
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
