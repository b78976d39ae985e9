"""What the delivery tests share: publish inputs, read topics back record by record (duplicates and
losses stay visible), compare a consumer group's committed offsets with the log ends, and read what
the sink stored in MongoDB and S3 per request id. Every wait is bounded and says what it waited
for. Plain aiokafka, motor and boto3 clients: nothing here goes through the code under test."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents.pipeline import FUSED, consumer_group
from core.config import Settings
from infra import mongo
from infra.object_store import S3ObjectStore
from schemas.messages import AnalysisResult
from schemas.topics import TopicNames

RESULTS_PREFIX = "analysis-results/"
T = TypeVar("T")

# An input: (request id, value, extra headers) or (request id, value, extra headers, partition).
Item = tuple[str, bytes, list] | tuple[str, bytes, list, int | None]


@dataclass(frozen=True, slots=True)
class Record:
    """One record read back from a topic."""

    request_id: str  # its `request-id` header, else the record key (images go by source), else ""
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()

    def json(self) -> Any:
        return orjson.loads(self.value)


def _request_id(key: bytes | None, headers: Sequence[tuple[str, bytes]]) -> str:
    for name, value in headers or ():
        if name == "request-id":
            return value.decode("utf-8", "replace")
    return key.decode("utf-8", "replace") if key else ""


def _shown(ids: Iterable[str], limit: int = 20) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"{ids[:limit]}{more}"


# --- waiting ------------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[T] | T], timeout_s: float, what: str, *, every_s: float = 0.2
) -> T:
    """Poll `check` (sync or async) until it returns something truthy, and return that; after
    `timeout_s` fail with `what` and the last value seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what} (last seen: {last!r})")
        await asyncio.sleep(every_s)


# --- producing ----------------------------------------------------------------------------------


async def publish(settings: Settings, items: Iterable[Item], *, topic: str | None = None) -> None:
    """Send each input to the images topic (or `topic`) with a `request-id` header, in order,
    and wait until the broker has acknowledged every one."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=4_000_000
    )
    await producer.start()
    try:
        for item in items:
            request_id, value, headers = item[0], item[1], item[2]
            partition = item[3] if len(item) > 3 else None
            await producer.send(
                topic or TopicNames(settings.topic_prefix).images,
                value,
                partition=partition,
                headers=[("request-id", request_id.encode()), *headers],
            )
        await producer.flush()
    finally:
        await producer.stop()


# --- consuming ----------------------------------------------------------------------------------


async def collect(
    settings: Settings,
    topic: str,
    expected_ids: Iterable[str],
    timeout_s: float,
    *,
    any_of: bool = False,
    at_least: int = 1,
    to_end: bool = True,
) -> list[Record]:
    """Every record on `topic`, read from the start without a consumer group, until each expected
    request id has been seen at least `at_least` times (with `any_of`: until any one of them has).

    With `to_end`, reading then goes on up to the log end as it stood at that moment, so records
    written before the condition was met (a late duplicate, say) are in the list too. Nothing is
    deduplicated: a request id published twice appears twice. Fails after `timeout_s` naming the
    ids still missing."""
    expected = set(expected_ids)
    assert expected, "collect() needs at least one expected request id"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,  # no group: every call reads the topic from the start
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Record] = []
    seen: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    def short() -> set[str]:
        return {rid for rid in expected if seen.get(rid, 0) < at_least}

    def satisfied() -> bool:
        return len(short()) < len(expected) if any_of else not short()

    async def read(timeout_ms: int) -> None:
        batch = await consumer.getmany(timeout_ms=timeout_ms)
        for tp in sorted(batch, key=lambda tp: tp.partition):
            for r in batch[tp]:
                headers = tuple(r.headers or ())
                rid = _request_id(r.key, headers)
                records.append(
                    Record(
                        rid, r.value or b"", r.topic, r.partition, r.offset, r.timestamp, headers
                    )
                )
                seen[rid] = seen.get(rid, 0) + 1

    try:
        while not satisfied() and loop.time() < deadline:
            await read(500)
        if satisfied() and to_end:
            assignment = consumer.assignment()
            while not assignment and loop.time() < deadline:
                await read(200)
                assignment = consumer.assignment()
            ends = await consumer.end_offsets(list(assignment))
            while loop.time() < deadline and any(
                [await consumer.position(tp) < end for tp, end in ends.items()]
            ):
                await read(200)
    finally:
        await consumer.stop()
    if any_of:
        assert satisfied(), (
            f"no record on {topic} within {timeout_s:g} s for any of {_shown(expected)} "
            f"({len(records)} records read)"
        )
    else:
        missing = short()
        times = "a record" if at_least == 1 else f"{at_least} records"
        assert not missing, (
            f"not {times} on {topic} within {timeout_s:g} s for {len(missing)} of "
            f"{len(expected)} request ids: {_shown(missing)} ({len(records)} records read)"
        )
    return records


async def topic_partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    """Every partition of an existing topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = [t for t in described if t["topic"] == topic and t["error_code"] == 0]
    assert found, f"no topic {topic}: {described}"
    return [TopicPartition(topic, p["partition"]) for p in found[0]["partitions"]]


async def read_to_end(settings: Settings, topic: str, timeout_s: float = 10.0) -> list[Record]:
    """Every record on `topic` up to its log end as it stands now (none expected in particular).
    Fails if the end is not reached within `timeout_s`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Record] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        partitions = await topic_partitions(settings, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            assert loop.time() < deadline, f"{topic} not read to its end within {timeout_s:g} s"
            batch = await consumer.getmany(timeout_ms=200)
            for tp in sorted(batch, key=lambda tp: tp.partition):
                for r in batch[tp]:
                    headers = tuple(r.headers or ())
                    records.append(
                        Record(
                            _request_id(r.key, headers),
                            r.value or b"",
                            r.topic,
                            r.partition,
                            r.offset,
                            r.timestamp,
                            headers,
                        )
                    )
    finally:
        await consumer.stop()
    return records


def by_request_id(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records grouped by request id, each group in (partition, offset) order: for one key that
    is the order they were written in."""
    groups: dict[str, list[Record]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        groups.setdefault(record.request_id, []).append(record)
    return groups


def duplicated(records: Iterable[Record]) -> dict[str, int]:
    """Request ids that appear more than once, with how often."""
    return {rid: len(group) for rid, group in by_request_id(records).items() if len(group) > 1}


def results(records: Iterable[Record]) -> dict[str, list[AnalysisResult]]:
    """The AnalysisResults of each request id, in the order they were published."""
    return {
        rid: [AnalysisResult.model_validate_json(r.value) for r in group]
        for rid, group in by_request_id(records).items()
    }


def comparable(result: AnalysisResult | dict) -> dict:
    """A result as JSON data for comparing deliveries: the document fields the sink adds for its
    indexes are dropped, and so is `timings_ms.sink` (the sink's own time, measured around the
    writes, so it cannot be part of what it stores)."""
    if isinstance(result, dict):
        fields = {k: v for k, v in result.items() if k in AnalysisResult.model_fields}
        result = AnalysisResult.model_validate(fields)
    data = result.model_dump(mode="json")
    data["timings_ms"] = {k: v for k, v in data["timings_ms"].items() if k != "sink"}
    return data


def diff(a: dict, b: dict) -> dict[str, tuple[Any, Any]]:
    """Top-level fields whose values differ between two JSON objects: {field: (a's, b's)}."""
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


# --- consumer group offsets ---------------------------------------------------------------------


async def committed_vs_end_offsets(
    settings: Settings, group: str, topic: str
) -> dict[int, tuple[int | None, int]]:
    """partition -> (offset the group committed, or None if it never committed one; log end)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    try:
        await consumer.start()
        partitions = await topic_partitions(settings, topic)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    out: dict[int, tuple[int | None, int]] = {}
    for tp in partitions:
        done = committed.get(tp)
        out[tp.partition] = (
            done.offset if done is not None and done.offset >= 0 else None,
            ends[tp],
        )
    return out


def worker_group(settings: Settings, stage: str = "all") -> str:
    """The consumer group of workers started with `--stage stage` (as control.worker_cli)."""
    enabled = [FUSED] if stage == "all" else stage.split(",")
    return consumer_group(settings.topic_prefix, enabled)


async def uncommitted(
    settings: Settings, topics: Iterable[str], stage: str = "all"
) -> dict[str, dict]:
    """For the group of `stage` workers: every partition of `topics` whose committed offset is
    not its log end, as {topic: {partition: (committed, end)}}; empty when all is committed."""
    group = worker_group(settings, stage)
    behind: dict[str, dict] = {}
    for topic in topics:
        offsets = await committed_vs_end_offsets(settings, group, topic)
        lagging = {p: ce for p, ce in offsets.items() if ce[0] != ce[1] and ce[1] > 0}
        if lagging:
            behind[topic] = lagging
    return behind


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def group_state(admin: AIOKafkaAdminClient, group: str) -> tuple[str, set[str]]:
    """A consumer group's state (Stable, PreparingRebalance, CompletingRebalance, Empty, Dead)
    and member ids, as its coordinator sees them now."""
    state, members = "", set()
    for response in await admin.describe_consumer_groups([group]):
        for described in response.to_object()["groups"]:
            state = described["state"]
            members.update(m["member_id"] for m in described["members"])
    return state, members


async def wait_all_committed(
    settings: Settings, topics: Iterable[str], timeout_s: float, stage: str = "all"
) -> None:
    """Wait until the group of `stage` workers has committed every record of `topics` (see
    `uncommitted`)."""
    topics = list(topics)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while behind := await uncommitted(settings, topics, stage):
        if loop.time() >= deadline:
            raise AssertionError(
                f"not within {timeout_s:g} s: the pipeline group committed every offset; "
                f"still behind, as {{topic: {{partition: (committed, end)}}}}: {behind}"
            )
        await asyncio.sleep(0.25)


# --- what the sink stored -----------------------------------------------------------------------


async def stored_documents(settings: Settings, ids: Iterable[str]) -> dict[str, list[dict]]:
    """MongoDB `analysis_results` documents per request id (a list: two would show)."""
    client = mongo.create_client(settings)
    try:
        cursor = mongo.database(client, settings)[mongo.ANALYSIS_RESULTS].find(
            {"request_id": {"$in": list(ids)}}, {"_id": 0}
        )
        docs = await cursor.to_list(None)
    finally:
        client.close()
    grouped: dict[str, list[dict]] = {}
    for doc in docs:
        grouped.setdefault(doc["request_id"], []).append(doc)
    return grouped


def _request_id_of_key(key: str) -> str | None:
    """`analysis-results/YYYY/MM/DD/<request_id>/result.json` -> request id."""
    parts = key.split("/")
    if len(parts) == 6 and parts[0] + "/" == RESULTS_PREFIX and parts[5] == "result.json":
        return parts[4]
    return None


async def result_json_keys(settings: Settings) -> dict[str, list[str]]:
    """Every `result.json` object in the bucket, keys grouped by request id."""
    store = S3ObjectStore.from_settings(settings)
    try:
        listed = await store.list(RESULTS_PREFIX)
    finally:
        await store.close()
    grouped: dict[str, list[str]] = {}
    for info in listed:
        rid = _request_id_of_key(info.key)
        if rid is not None:
            grouped.setdefault(rid, []).append(info.key)
    return grouped


async def read_json_objects(settings: Settings, keys: Iterable[str]) -> dict[str, Any]:
    """The parsed JSON content of each object key."""
    store = S3ObjectStore.from_settings(settings)
    try:
        return {key: orjson.loads((await store.get(key)).data) for key in keys}
    finally:
        await store.close()


def counts(grouped: dict[str, list]) -> dict[str, int]:
    return {rid: len(group) for rid, group in grouped.items()}


def not_exactly_once(grouped: dict[str, list], ids: Iterable[str]) -> dict[str, int]:
    """Request ids among `ids` found zero times or more than once, with the count."""
    found = counts(grouped)
    return {rid: found.get(rid, 0) for rid in ids if found.get(rid, 0) != 1}


# --- worker heartbeats --------------------------------------------------------------------------


async def worker_statuses(settings: Settings, timeout_s: float = 5.0) -> dict[int, dict]:
    """The newest heartbeat (WorkerStatus JSON) of every worker on the control topic, by process
    id. Read as plain JSON, so a field added to the status does not break the tests."""
    topic = TopicNames(settings.topic_prefix).control
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    newest: dict[int, dict] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending: list = []

    async def read() -> None:
        batch = await consumer.getmany(timeout_ms=200)
        pending.extend(r for rs in batch.values() for r in rs)

    try:
        while not consumer.assignment() and loop.time() < deadline:
            await read()
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while loop.time() < deadline and any(
            [await consumer.position(tp) < end for tp, end in ends.items()]
        ):
            await read()
    finally:
        await consumer.stop()
    for record in sorted(pending, key=lambda r: r.timestamp):
        if record.key and record.key.startswith(b"status:") and record.value:
            status = orjson.loads(record.value)
            newest[status["pid"]] = status
    return newest


def owned(status: dict, topic: str) -> set[int]:
    """The partitions of `topic` a worker reported in its heartbeat (or registry row)."""
    return {int(p.rsplit(":", 1)[1]) for p in status["partitions"] if p.rsplit(":", 1)[0] == topic}
