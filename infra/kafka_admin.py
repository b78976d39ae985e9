"""Declare the project's topics and check the cluster, through aiokafka's admin client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from core.config import Settings
from infra.kafka_security import kafka_client_kwargs
from schemas.topics import STAGE_MESSAGE_MAX_BYTES, TopicNames


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: str
    controller_id: int
    broker_count: int


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The public topics with partitions, replication and retention from settings."""
    topics = TopicNames(settings.topic_prefix)
    data = {"retention.ms": str(settings.topic_retention_ms)}

    stage = {
        "retention.ms": str(min(settings.topic_retention_ms, 86_400_000)),
        "max.message.bytes": str(STAGE_MESSAGE_MAX_BYTES),
    }

    def spec(name: str, configs: dict[str, str]) -> TopicSpec:
        return TopicSpec(name, settings.topic_partitions, settings.topic_replication, configs)

    return [
        spec(topics.images, data),
        spec(topics.uploads, data),
        spec(topics.results, data),
        spec(topics.dlq, data),
        spec(topics.alerts, data),
        # Commands and worker status: compaction keeps each worker's latest status forever.
        spec(topics.control, {"cleanup.policy": "compact,delete", **data}),
        # Stage topics hold work in flight only: a day is plenty to recover from an outage.
        spec(topics.prepared, stage),
        spec(topics.detected, stage),
    ]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    end: int
    group: str | None = None  # the group that committed furthest; None: no group committed yet

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


class KafkaAdmin:
    """A lazily-started admin client: constructing it does no network I/O.

    Given Settings, it connects as every client of the system does (infra.kafka_security); a bare
    bootstrap string connects in plain text (the test harness's own probes)."""

    def __init__(self, target: Settings | str, *, request_timeout_ms: int = 10_000) -> None:
        if isinstance(target, Settings):
            self._bootstrap = target.kafka_bootstrap
            self._security = kafka_client_kwargs(target)
        else:
            self._bootstrap, self._security = target, {}
        self._timeout_ms = request_timeout_ms
        self._client: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _admin(self) -> AIOKafkaAdminClient:
        if self._client is None:
            client = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=self._timeout_ms,
                **self._security,
            )
            await client.start()
            self._client = client
        return self._client

    async def cluster(self) -> ClusterInfo:
        described = await (await self._admin()).describe_cluster()
        return ClusterInfo(
            cluster_id=described["cluster_id"],
            controller_id=described["controller_id"],
            broker_count=len(described["brokers"]),
        )

    async def health(self) -> str:
        """Raise when no broker answers; otherwise a one-line description for /ready."""
        info = await self.cluster()
        if info.broker_count == 0:
            raise RuntimeError("the cluster reports no brokers")
        return f"cluster {info.cluster_id}, {info.broker_count} broker(s)"

    async def partitions(self, names: list[str]) -> dict[str, int]:
        """Partition count of each existing topic among `names`."""
        # Metadata for *all* topics: naming topics in the request lets a broker with
        # auto-creation on (tansu, default Kafka) create them with the wrong partition count.
        wanted = set(names)
        described = await (await self._admin()).describe_topics()
        return {
            t["topic"]: len(t["partitions"])
            for t in described
            if t["topic"] in wanted and t["error_code"] == 0
        }

    async def declare(self, specs: list[TopicSpec]) -> dict[str, str]:
        """Create missing topics and grow any with too few partitions. Idempotent.

        Returns what happened to each topic: `created`, `grown` or `exists`. Partitions are never
        removed (Kafka cannot) and an existing topic's configs are left as operators set them.
        """
        admin = await self._admin()
        existing = await self.partitions([s.name for s in specs])
        outcome: dict[str, str] = {}
        missing = [s for s in specs if s.name not in existing]
        raced: list[str] = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication, topic_configs=s.configs)
                    for s in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                error = for_code(code)
                if error is TopicAlreadyExistsError:
                    raced.append(name)  # created meanwhile, e.g. by another worker starting
                elif code:
                    message = rest[0] if rest else ""
                    raise error(f"cannot create topic {name}: {message}")
                else:
                    outcome[name] = "created"
        if raced:
            existing.update(await self._visible_partitions(raced))
        for s in specs:
            if s.name in existing:
                if existing[s.name] < s.partitions:
                    await admin.create_partitions({s.name: NewPartitions(s.partitions)})
                    outcome[s.name] = "grown"
                else:
                    outcome[s.name] = "exists"
        return outcome

    async def _visible_partitions(
        self, names: list[str], timeout_s: float = 10.0
    ) -> dict[str, int]:
        """Partition counts of topics that exist but may not be in the metadata yet."""
        async with asyncio.timeout(timeout_s):
            while len(found := await self.partitions(names)) < len(names):  # noqa: ASYNC110 - polling a remote broker
                await asyncio.sleep(0.1)
        return found

    async def topic_configs(self, name: str) -> dict[str, str]:
        """The topic's effective configuration (name -> value)."""
        responses = await (await self._admin()).describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)]
        )
        resource = responses[0].to_object()["resources"][0]
        if resource["error_code"]:
            raise for_code(resource["error_code"])(f"{name}: {resource['error_message']}")
        return {
            entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
        }

    async def groups(self, stem: str) -> list[str]:
        """The consumer groups named `stem` or `stem-…` (the pipeline's roles: TopicNames)."""
        listed = await (await self._admin()).list_consumer_groups()
        return sorted(g for g, *_ in listed if g == stem or g.startswith(f"{stem}-"))

    async def consumer_lag(self, groups: str | list[str], topics: list[str]) -> list[PartitionLag]:
        """Committed offset vs log end of every partition of `topics`: the furthest offset any
        of `groups` committed there (in a deployment each topic is consumed by one role)."""
        admin = await self._admin()
        committed: dict[TopicPartition, int] = {}
        by: dict[TopicPartition, str] = {}
        for group in [groups] if isinstance(groups, str) else groups:
            for tp, meta in (await admin.list_consumer_group_offsets(group)).items():
                if meta.offset > committed.get(tp, -1):
                    committed[tp], by[tp] = meta.offset, group
        sizes = await self.partitions(topics)
        wanted = [TopicPartition(t, p) for t, n in sorted(sizes.items()) for p in range(n)]
        ends = await (await self._offsets()).end_offsets(wanted) if wanted else {}
        lags = []
        for tp in wanted:
            position = max(committed.get(tp, 0), 0)
            lags.append(PartitionLag(tp.topic, tp.partition, position, ends[tp], by.get(tp)))
        return lags

    async def _offsets(self) -> AIOKafkaConsumer:
        """A group-less consumer for log-end offsets, started once like the admin client."""
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=self._timeout_ms,
                **self._security,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._client is not None:
            await self._client.close()
            self._client = None
