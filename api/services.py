"""Everything the API talks to, opened once at start-up and closed at shutdown."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from redis.asyncio import Redis

from api.metrics import ApiMetrics
from api.rate_limit import RateLimiter
from api.registry import WorkerRegistry
from api.results_hub import ResultsHub
from core.config import ConfigError, Settings
from core.imaging import ImageLimits
from infra import mongo, redis_client
from infra.kafka_admin import KafkaAdmin, PartitionLag
from infra.kafka_clients import TopicFollower, create_producer
from infra.object_store import ObjectStore, create_object_store
from infra.rules_store import RuleCache, RulesRepository
from infra.users_store import UsersRepository
from schemas.topics import TopicNames

log = logging.getLogger(__name__)


@dataclass
class ApiServices:
    settings: Settings
    topics: TopicNames
    mongo_client: AsyncIOMotorClient
    db: AsyncIOMotorDatabase
    redis: Redis | None
    store: ObjectStore
    producer: AIOKafkaProducer
    users: UsersRepository
    rules: RulesRepository
    rule_cache: RuleCache
    limiter: RateLimiter
    limits: ImageLimits
    registry: WorkerRegistry
    kafka_admin: KafkaAdmin
    hub: ResultsHub = field(default_factory=ResultsHub)
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    _followers: list[TopicFollower] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings) -> ApiServices:
        if settings.jwt_secret is None:
            raise ConfigError("MUGPOS_JWT_SECRET must be set to run the API (>= 32 random chars)")
        client = mongo.create_client(settings)
        db = mongo.database(client, settings)
        redis = redis_client.create_client(settings)
        rules = RulesRepository(db)
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        return cls(
            settings=settings,
            topics=TopicNames(settings.topic_prefix),
            mongo_client=client,
            db=db,
            redis=redis,
            store=create_object_store(settings),
            producer=create_producer(settings),
            users=UsersRepository(db, key),
            rules=rules,
            rule_cache=RuleCache(rules, redis, settings.topic_prefix),
            limiter=RateLimiter(settings),
            registry=WorkerRegistry(settings),
            kafka_admin=KafkaAdmin(settings.kafka_bootstrap, request_timeout_ms=5000),
            limits=ImageLimits(
                max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            ),
        )

    @property
    def jwt_secret(self) -> str:
        assert self.settings.jwt_secret is not None  # checked in open()
        return self.settings.jwt_secret.get_secret_value()

    async def start(self) -> None:
        await mongo.ensure_indexes(self.db)
        await self.producer.start()
        self._followers = [
            TopicFollower(self.settings, self.topics.results, self._on_result),
            TopicFollower(self.settings, self.topics.control, self.registry.on_message),
        ]
        for follower in self._followers:
            await follower.start()
        log.info("API ready: following %s and %s", self.topics.results, self.topics.control)

    async def pipeline_lag(self) -> list[PartitionLag]:
        """Committed offset vs log end of every partition the pipeline's workers consume."""
        return await self.kafka_admin.consumer_lag(
            self.topics.pipeline_group, list(self.topics.consumed())
        )

    async def _on_result(self, key: bytes, value: bytes) -> None:
        self.metrics.observe_result(orjson.loads(value))
        await self.hub.on_result(key, value)

    async def stop(self) -> None:
        for follower in self._followers:
            await follower.stop()
        await self.producer.stop()
        await self.kafka_admin.close()
        await self.store.close()
        self.mongo_client.close()
        if self.redis is not None:
            await self.redis.aclose()
