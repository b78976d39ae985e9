"""Everything the API talks to, opened once at start-up and closed at shutdown.

MongoDB, Redis and the object store come from the bundle the pipeline worker opens too
(infra.clients); results are read (and uploads marked pending) through the same ResultStore the
worker's sink saves with."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer
from motor.motor_asyncio import AsyncIOMotorDatabase
from redis.asyncio import Redis

from api.metrics import ApiMetrics
from api.rate_limit import RateLimiter
from api.registry import WorkerRegistry
from api.results_hub import ResultsHub
from core.config import ConfigError, Settings
from core.imaging import ImageLimits
from infra import activity_log, mongo
from infra.clients import Clients
from infra.kafka_admin import KafkaAdmin, PartitionLag
from infra.kafka_clients import TopicFollower, create_producer
from infra.kafka_security import verify_kafka_access
from infra.object_store import ObjectStore
from infra.result_store import ResultStore
from infra.rules_store import RuleCache, RulesRepository
from infra.source_state import SourceStates
from infra.sources_store import SourceCache, SourcesRepository
from infra.streams_store import StreamsStore
from infra.users_store import UsersRepository
from infra.webhooks_store import WebhookDeliveries, WebhookEndpoints
from infra.write_behind import WriteBehind
from schemas.topics import TopicNames

log = logging.getLogger(__name__)


@dataclass
class ApiServices:
    settings: Settings
    topics: TopicNames
    clients: Clients
    results: ResultStore
    producer: AIOKafkaProducer
    users: UsersRepository
    rules: RulesRepository
    rule_cache: RuleCache
    sources: SourcesRepository
    source_cache: SourceCache
    source_states: SourceStates
    streams: StreamsStore
    webhooks: WebhookEndpoints
    webhook_deliveries: WebhookDeliveries
    limiter: RateLimiter
    limits: ImageLimits
    registry: WorkerRegistry
    kafka_admin: KafkaAdmin
    audit_log: WriteBehind[dict[str, object]]
    hub: ResultsHub = field(default_factory=ResultsHub)
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    _followers: list[TopicFollower] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings) -> ApiServices:
        if settings.jwt_secret is None:
            raise ConfigError("MUGPOS_JWT_SECRET must be set to run the API (>= 32 random chars)")
        clients = Clients.open(settings)
        db, redis = clients.db, clients.redis
        rules = RulesRepository(db)
        sources = SourcesRepository(db)
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        metrics = ApiMetrics()
        return cls(
            settings=settings,
            topics=TopicNames(settings.topic_prefix),
            clients=clients,
            results=ResultStore(
                db,
                clients.store,
                redis,
                settings.topic_prefix,
                settings.result_cache_ttl_s,
                on_cache_lookup=metrics.record_cache,
            ),
            producer=create_producer(settings),
            audit_log=WriteBehind(
                "upload audit entries",
                lambda entries: activity_log.record_many(db, entries),
                id,  # every entry is its own item
            ),
            metrics=metrics,
            users=UsersRepository(db, key),
            rules=rules,
            rule_cache=RuleCache(rules, redis, settings.topic_prefix),
            sources=sources,
            source_cache=SourceCache(sources, redis, settings.topic_prefix),
            source_states=SourceStates(db),
            streams=StreamsStore(db),
            webhooks=WebhookEndpoints(db, key),
            webhook_deliveries=WebhookDeliveries(db),
            limiter=RateLimiter(settings),
            registry=WorkerRegistry(settings),
            kafka_admin=KafkaAdmin(settings, request_timeout_ms=5000),
            limits=ImageLimits(
                max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            ),
        )

    @property
    def db(self) -> AsyncIOMotorDatabase:
        return self.clients.db

    @property
    def redis(self) -> Redis | None:
        return self.clients.redis

    @property
    def store(self) -> ObjectStore:
        return self.clients.store

    @property
    def jwt_secret(self) -> str:
        assert self.settings.jwt_secret is not None  # checked in open()
        return self.settings.jwt_secret.get_secret_value()

    async def start(self) -> None:
        await mongo.ensure_indexes(self.db)
        await verify_kafka_access(self.settings)  # a wrong password stops start-up, named
        await self.producer.start()
        self._followers = [
            TopicFollower(self.settings, self.topics.results, self._on_result),
            TopicFollower(self.settings, self.topics.control, self.registry.on_message),
        ]
        for follower in self._followers:
            await follower.start()
        log.info("API ready: following %s and %s", self.topics.results, self.topics.control)

    async def pipeline_lag(self) -> list[PartitionLag]:
        """Committed offset vs log end of every partition the pipeline's workers consume, over
        the fused workers' group and every split role's."""
        groups = await self.kafka_admin.groups(self.topics.pipeline_group)
        return await self.kafka_admin.consumer_lag(groups, list(self.topics.consumed()))

    async def _on_result(self, key: bytes, value: bytes) -> None:
        self.metrics.observe_result(orjson.loads(value))
        await self.hub.on_result(key, value)

    async def stop(self) -> None:
        for follower in self._followers:
            await follower.stop()
        await self.producer.stop()
        await self.kafka_admin.close()
        await self.results.close()  # buffered placeholders and audit entries, before MongoDB
        await self.audit_log.close()
        await self.clients.close()
