"""Dead-letter redrive: read `{prefix}.dlq.v1`, decide what can be replayed, and re-publish it to
the images topic as a claim check once the cause is fixed.

Replays are remembered in MongoDB (`dlq_replays`, one document per dead-letter position), so
running the same redrive twice does not send the same inputs twice. A replay is published
before it is remembered: a crash in between re-sends it on the next run, which the sink absorbs
(one result per request id), rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from core.config import Settings
from core.pipeline.redrive import LetterFilter, position_label, replay_headers
from infra import activity_log, mongo
from infra.kafka_admin import KafkaAdmin
from infra.kafka_security import kafka_client_kwargs
from infra.object_store import (
    InvalidObjectKey,
    ObjectNotFound,
    ObjectStoreError,
    create_object_store,
)
from schemas.messages import DeadLetter, ImageRef
from schemas.topics import TopicNames

log = logging.getLogger(__name__)

REPLAY_ACTION = "dlq.replay"
_KAFKA_TIMEOUT_MS = 10_000
_CHECKS_AT_ONCE = 8  # the S3 store's thread pool size


class RedriveError(RuntimeError):
    """A dependency failed; the message is meant for the operator (no internal detail)."""


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter and where it sits on the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def position(self) -> tuple[int, int]:
        return (self.partition, self.offset)

    @property
    def label(self) -> str:
        return position_label(self.partition, self.offset)


@dataclass(slots=True)
class LetterScan:
    """The selected letters (oldest first) and how many records were not dead letters at all."""

    letters: list[StoredLetter] = field(default_factory=list)
    unreadable: int = 0


async def read_letters(
    settings: Settings, wanted: LetterFilter, *, timeout_s: float = 120.0
) -> LetterScan:
    """Every selected letter from the start of the topic up to the end offsets taken now.

    No consumer group (nothing is committed, nothing changes for anyone else) and never a wait
    for new records: letters arriving during the scan are left for the next one."""
    topic = TopicNames(settings.topic_prefix).dlq
    try:
        async with asyncio.timeout(timeout_s):
            return await _scan(settings, topic, wanted)
    except TimeoutError:
        raise RedriveError(f"reading {topic} took over {timeout_s:g} s; nothing was done") from None
    except KafkaError as exc:
        log.debug("reading %s failed", topic, exc_info=exc)
        raise RedriveError(
            f"cannot read {topic} from Kafka at {settings.kafka_bootstrap}; "
            "is the broker up? (`mugpos check` tells)"
        ) from None


async def _partition_count(settings: Settings, topic: str) -> int:
    admin = KafkaAdmin(settings, request_timeout_ms=_KAFKA_TIMEOUT_MS)
    try:
        count = (await admin.partitions([topic])).get(topic)
    finally:
        await admin.close()
    if not count:
        raise RedriveError(f"topic {topic} does not exist; run `mugpos setup` first")
    return count


async def _scan(settings: Settings, topic: str, wanted: LetterFilter) -> LetterScan:
    count = await _partition_count(settings, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=_KAFKA_TIMEOUT_MS,
        client_id=f"{settings.topic_prefix}-dlq-redrive",
        **kafka_client_kwargs(settings),
    )
    await consumer.start()
    scan = LetterScan()
    try:
        assigned = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        starts = await consumer.beginning_offsets(assigned)
        pending = {tp for tp in assigned if ends[tp] > starts[tp]}
        for tp in assigned:
            consumer.seek(tp, starts[tp])
        consumer.pause(*(set(assigned) - pending))
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        _keep(scan, wanted, tp.partition, record.offset, record.value)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)  # records after the end offset are the next scan's
    finally:
        await consumer.stop()
    scan.letters.sort(key=lambda s: (s.letter.failed_at, s.partition, s.offset))
    return scan


def _keep(
    scan: LetterScan, wanted: LetterFilter, partition: int, offset: int, value: bytes | None
) -> None:
    try:
        letter = DeadLetter.model_validate_json(value or b"")
    except ValidationError:
        scan.unreadable += 1
        return
    if letter.failed_at.tzinfo is None:  # written by another producer; the stages write UTC
        letter = letter.model_copy(update={"failed_at": letter.failed_at.replace(tzinfo=UTC)})
    if wanted.matches(letter):
        scan.letters.append(StoredLetter(partition, offset, letter))


class Redrive:
    """The clients one `mugpos dlq` run needs: object store, MongoDB and (for replays only) a
    producer. Use as `async with Redrive(settings) as redrive:`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topics = TopicNames(settings.topic_prefix)
        self._store = create_object_store(settings)
        self._client = mongo.create_client(settings)
        self._db = mongo.database(self._client, settings)
        self._producer: AIOKafkaProducer | None = None
        self._checked: dict[str, str | None] = {}

    async def __aenter__(self) -> Redrive:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
        self._client.close()
        await self._store.close()

    async def replay_counts(self, letters: Iterable[StoredLetter]) -> dict[tuple[int, int], int]:
        """How often each letter was replayed before (absent: never)."""
        offsets: dict[int, list[int]] = {}
        for stored in letters:
            offsets.setdefault(stored.partition, []).append(stored.offset)
        counts: dict[tuple[int, int], int] = {}
        collection = self._db[mongo.DLQ_REPLAYS]
        try:
            for partition, wanted in offsets.items():
                for start in range(0, len(wanted), 1000):
                    query = {
                        "dlq_topic": self._topics.dlq,
                        "partition": partition,
                        "offset": {"$in": wanted[start : start + 1000]},
                    }
                    async for doc in collection.find(query, {"offset": 1, "replays": 1}):
                        counts[(partition, doc["offset"])] = int(doc.get("replays", 1))
        except PyMongoError as exc:
            raise self._mongo_error(exc) from None
        return counts

    async def why_not_replayable(self, letter: DeadLetter) -> str | None:
        """None when the original bytes are still in the object store; otherwise why not."""
        key = letter.object_key
        if not key:
            return "original bytes were not kept (no object key)"
        if key not in self._checked:  # a letter replayed and failed again shares its key
            self._checked[key] = await self._check(key)
        return self._checked[key]

    async def why_not_replayable_all(self, letters: list[StoredLetter]) -> list[str | None]:
        """`why_not_replayable` of each letter, a few object-store requests at a time."""
        limit = asyncio.Semaphore(_CHECKS_AT_ONCE)

        async def one(stored: StoredLetter) -> str | None:
            async with limit:
                return await self.why_not_replayable(stored.letter)

        return list(await asyncio.gather(*(one(s) for s in letters)))

    async def _check(self, key: str) -> str | None:
        try:
            await self._store.head(key)
        except ObjectNotFound:
            return f"object {key} no longer exists"
        except InvalidObjectKey:
            return f"object key {key!r} is not valid"
        except ObjectStoreError as exc:
            log.debug("object store head %s failed", key, exc_info=exc)
            raise RedriveError(
                "cannot reach the object store to check the original images "
                "(`mugpos check` tells more)"
            ) from None
        return None

    async def replay(self, stored: StoredLetter, *, user: str, again: bool) -> None:
        """Publish the letter's input again as a claim check, remember it, audit it."""
        letter = stored.letter
        assert letter.object_key is not None  # checked by why_not_replayable
        body = ImageRef(image_ref=letter.object_key).model_dump_json().encode()
        producer = await self._started_producer()
        try:
            await producer.send_and_wait(
                self._topics.images,
                body,
                key=(letter.original_key or letter.request_id).encode(),
                headers=replay_headers(letter, stored.partition, stored.offset),
            )
        except KafkaError as exc:
            log.debug("publishing replay of %s failed", stored.label, exc_info=exc)
            raise RedriveError(
                f"cannot publish to {self._topics.images}; {stored.label} was not replayed"
            ) from None
        now = datetime.now(UTC)
        try:
            await self._db[mongo.DLQ_REPLAYS].update_one(
                {
                    "dlq_topic": self._topics.dlq,
                    "partition": stored.partition,
                    "offset": stored.offset,
                },
                {
                    "$inc": {"replays": 1},
                    "$set": {
                        "request_id": letter.request_id,
                        "reason": letter.reason,
                        "last_replayed_at": now,
                        "last_replayed_by": user,
                    },
                    "$setOnInsert": {"first_replayed_at": now},
                },
                upsert=True,
            )
            await activity_log.record(
                self._db,
                user_id=user,
                action=REPLAY_ACTION,
                resource=letter.request_id,
                detail={
                    "dlq": stored.label,
                    "dlq_topic": self._topics.dlq,
                    "reason": letter.reason,
                    "stage": letter.stage,
                    "object_key": letter.object_key,
                    "again": again,
                },
            )
        except PyMongoError as exc:
            log.debug("recording the replay of %s failed", stored.label, exc_info=exc)
            raise RedriveError(
                f"{stored.label} was replayed but could not be recorded in MongoDB database "
                f"{self._settings.mongodb_db}; a later run would send it again"
            ) from None

    async def ensure_ledger(self) -> None:
        """The replay ledger's index, for deployments set up before it existed."""
        specs = mongo.INDEXES[mongo.DLQ_REPLAYS]
        try:
            await self._db[mongo.DLQ_REPLAYS].create_indexes([s.model() for s in specs])
        except PyMongoError as exc:
            raise self._mongo_error(exc) from None

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                acks="all",
                linger_ms=0,
                request_timeout_ms=_KAFKA_TIMEOUT_MS,
                client_id=f"{self._settings.topic_prefix}-dlq-redrive",
                **kafka_client_kwargs(self._settings),
            )
            try:
                await producer.start()
            except KafkaError as exc:
                log.debug("producer start failed", exc_info=exc)
                await producer.stop()
                raise RedriveError(
                    f"cannot reach Kafka at {self._settings.kafka_bootstrap} to publish replays"
                ) from None
            self._producer = producer
        return self._producer

    def _mongo_error(self, exc: PyMongoError) -> RedriveError:
        log.debug("MongoDB failed", exc_info=exc)
        return RedriveError(
            f"cannot use MongoDB database {self._settings.mongodb_db} "
            "(replays are remembered there; `mugpos check` tells more)"
        )
