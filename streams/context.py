"""Everything the pipeline's stages talk to, opened once per worker and closed on shutdown."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from redis.asyncio import Redis

from core.config import Settings
from core.imaging import ImageLimits
from core.models.manager import ModelManager
from core.pipeline.health import DependencyHealth
from core.pipeline.live import LiveSettings
from infra import mongo
from infra.attempts import FailureCounter
from infra.clients import Clients
from infra.model_store import model_manager_from_settings, model_store_from_settings
from infra.object_store import ObjectStore
from infra.result_store import ResultStore
from infra.rules_store import RuleCache, RulesRepository
from infra.source_state import SourceStates
from infra.sources_store import SourceCache, SourcesRepository
from schemas.topics import TopicNames


@dataclass
class PipelineContext:
    settings: Settings
    topics: TopicNames
    store: ObjectStore
    mongo_client: AsyncIOMotorClient
    db: AsyncIOMotorDatabase
    redis: Redis | None
    rules: RuleCache
    sources: SourceCache
    states: SourceStates
    results: ResultStore
    failures: FailureCounter
    limits: ImageLimits
    health: DependencyHealth = field(default_factory=DependencyHealth)
    live: LiveSettings = field(default_factory=lambda: LiveSettings(max_batch=8))
    models: ModelManager | None = None
    input_size: int = 0
    # One thread runs the model: the event loop keeps heartbeats and commits going meanwhile.
    inference_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="inference")
    )
    # Decoding and letterboxing, one thread per core (Pillow and OpenCV release the GIL there).
    decode_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="decode")
    )
    _listeners: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings) -> PipelineContext:
        clients = Clients.open(settings)
        db, redis, store = clients.db, clients.redis, clients.store
        prefix = settings.topic_prefix
        return cls(
            settings=settings,
            topics=TopicNames(prefix),
            store=store,
            mongo_client=clients.mongo_client,
            db=db,
            redis=redis,
            rules=RuleCache(RulesRepository(db), redis, prefix),
            sources=SourceCache(SourcesRepository(db), redis, prefix),
            states=SourceStates(db),
            results=ResultStore(db, store, redis, prefix, settings.result_cache_ttl_s),
            failures=FailureCounter(db),
            limits=ImageLimits(
                max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            ),
            live=LiveSettings(settings.max_batch, settings.confidence_threshold),
        )

    async def start(self, *, with_model: bool) -> None:
        await mongo.ensure_indexes(self.db)
        store = model_store_from_settings(self.settings, self.store)
        self.input_size = (await store.resolve(self.settings.model)).manifest.input_size
        if with_model:
            self.models = model_manager_from_settings(self.settings, store)
            await self.models.activate(self.settings.model)
        await self.rules.rule_set()
        for cache in (self.rules, self.sources):
            ready = asyncio.Event()
            self._listeners.append(asyncio.create_task(cache.listen(ready)))
            await ready.wait()

    async def stop(self) -> None:
        for listener in self._listeners:
            listener.cancel()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        self.inference_executor.shutdown(wait=True)
        self.decode_executor.shutdown(wait=True)
        await Clients(self.mongo_client, self.db, self.redis, self.store).close()
