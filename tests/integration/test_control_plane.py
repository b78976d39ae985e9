"""Operators see and steer real `mugpos worker` processes through the API: registry, lost
workers, pause/resume, live max_batch, drain-and-stop, idle shutdown, and who may do it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from control.cli import app
from core.config import Settings
from core.models.manifest import DEFAULT_MODEL
from infra import mongo
from infra.launchers import free_port
from infra.mongo import ACTIVITY_LOGS
from schemas.topics import TopicNames
from tests.integration.api_server import ApiServer, login, start_api
from tests.integration.kafka_io import (
    Record,
    admin_client,
    by_request_id,
    collect,
    committed_vs_end_offsets,
    counts,
    group_state,
    not_exactly_once,
    owned,
    publish,
    read_to_end,
    stored_documents,
    wait_all_committed,
    worker_group,
)
from tests.integration.workers import WorkerProcess, scene_jpeg

BEAT = "1"  # heartbeat interval (s) for these workers
SPLIT = "preprocess,inference,analysis"  # workers running the stages over the stage topics


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `check` until it returns something truthy (returned); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what} (last seen: {value!r:.300})")


@pytest.fixture
def plane(api_deployment: Settings, tmp_path: Path) -> Iterator[tuple[ApiServer, list]]:
    env = {"MUGPOS_HEARTBEAT_INTERVAL_S": BEAT}
    workers = [WorkerProcess(api_deployment, tmp_path, f"w{i}", env) for i in range(2)]
    server = start_api(api_deployment)
    try:
        yield server, workers
    finally:
        server.stop()
        for worker in workers:
            worker.stop()


def _servers(api: ApiServer, headers: dict) -> dict:
    reply = httpx.get(f"{api.url}/api/v1/servers", headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _live_with_partitions(api: ApiServer, headers: dict, count: int) -> list[dict] | None:
    workers = [w for w in _servers(api, headers)["workers"] if w["state"] == "running"]
    images = TopicNames(api.settings.topic_prefix).images
    held = [p for w in workers for p in w["partitions"] if p.startswith(images)]
    if len(workers) == count and len(held) == api.settings.topic_partitions:
        return workers
    return None


def _command(
    api: ApiServer, headers: dict, worker: str, action: str, **params: Any
) -> httpx.Response:
    return httpx.post(
        f"{api.url}/api/v1/servers/{worker}/commands",
        json={"action": action, "params": params},
        headers=headers,
        timeout=30,
    )


def _publish(settings: Settings, partitions: list[int], per_partition: int) -> dict[str, int]:
    """Scene images to the given image partitions; returns request id -> partition."""
    items = [
        (f"cp-{partition}-{n}-{time.monotonic_ns()}", scene_jpeg(n, 320), [], partition)
        for partition in partitions
        for n in range(per_partition)
    ]
    asyncio.run(publish(settings, items))
    return {rid: partition for rid, _, _, partition in items}


def _committed(settings: Settings) -> dict[int, int]:
    """The pipeline group's committed offset of each image partition (0 before any commit)."""
    names = TopicNames(settings.topic_prefix)
    offsets = asyncio.run(committed_vs_end_offsets(settings, names.pipeline_group, names.images))
    return {p: committed or 0 for p, (committed, _) in offsets.items()}


def _all_images_committed(settings: Settings) -> bool:
    names = TopicNames(settings.topic_prefix)
    offsets = asyncio.run(committed_vs_end_offsets(settings, names.pipeline_group, names.images))
    return all((committed or 0) == end for committed, end in offsets.values())


def _stored(settings: Settings, ids: list[str]) -> dict[str, int]:
    """MongoDB documents per request id."""
    return counts(asyncio.run(stored_documents(settings, ids)))


def _row(api: ApiServer, headers: dict, worker_id: str) -> dict:
    return {w["worker_id"]: w for w in _servers(api, headers)["workers"]}[worker_id]


def _partition_numbers(worker: dict, topic: str) -> list[int]:
    return sorted(
        int(p.rsplit(":", 1)[1]) for p in worker["partitions"] if p.startswith(topic + ":")
    )


def _owns_every_image_partition(api: ApiServer, headers: dict, worker_id: str) -> bool:
    worker = {w["worker_id"]: w for w in _servers(api, headers)["workers"]}[worker_id]
    images = TopicNames(api.settings.topic_prefix).images
    return len(_partition_numbers(worker, images)) == api.settings.topic_partitions


def test_registry_pause_resume_live_settings_and_lost_workers(plane) -> None:
    api, processes = plane
    admin, analyst, viewer = login(api, "admin"), login(api, "analyst"), login(api, "viewer")
    workers = _until(
        lambda: _live_with_partitions(api, admin, 2), 90, "two workers with partitions"
    )
    first, second = workers
    for worker in workers:
        assert worker["model"] == DEFAULT_MODEL
        assert worker["gpu"]["present"] is False
        assert worker["rss_mb"] > 0
        assert worker["max_batch"] == 8
    assert _command(api, analyst, first["worker_id"], "pause").status_code == 403
    assert httpx.get(f"{api.url}/api/v1/servers", headers=viewer).status_code == 403
    assert _command(api, admin, "all", "set", max_batch=1000).status_code == 422
    assert _command(api, admin, "all", "launch").status_code == 422
    refused_wait = _command(api, admin, "all", "set", max_wait_ms=10)
    assert refused_wait.status_code == 422
    assert "restart" in refused_wait.text

    # A change every worker must refuse is refused with its reason.
    refused = _command(api, admin, first["worker_id"], "switch_model", model="mugdet-synth:9.9.9")
    ack = refused.json()["acks"][first["worker_id"]]
    assert ack["ok"] is False
    assert "9.9.9" in ack["reason"]
    # A bundled version made for another input size cannot replace the served one live.
    resized = _command(api, admin, first["worker_id"], "switch_model", model="mugdet-synth:1.0.0")
    ack = resized.json()["acks"][first["worker_id"]]
    assert ack["ok"] is False
    assert "restart" in ack["reason"]

    # Live max_batch: every worker acknowledges this very command while the API waits for the
    # acks, and the batches that follow are no larger.
    reply = _command(api, admin, "all", "set", max_batch=2)
    assert reply.status_code == 202
    issued = reply.json()
    assert {w: a["ok"] for w, a in issued["acks"].items()} == {
        first["worker_id"]: True,
        second["worker_id"]: True,
    }
    for ack in issued["acks"].values():  # this command's ack, applied after it was issued
        assert ack["command_id"] == issued["command_id"]
        assert datetime.fromisoformat(ack["applied_at"]) >= datetime.fromisoformat(
            issued["issued_at"]
        )
    ids = list(_publish(api.settings, list(range(api.settings.topic_partitions)), 6))
    _until(lambda: len(_stored(api.settings, ids)) == len(ids), 120, "18 results")
    view = _servers(api, admin)["workers"]
    sizes = {size for w in view for size in w["batch_sizes"]}
    assert sizes
    assert sizes <= {"1", "2"}
    assert all(w["max_batch"] == 2 for w in view)

    # The CLI shows the same registry and sends commands through the API.
    runner = CliRunner()
    env = {"MUGPOS_API_TOKEN": admin["Authorization"].removeprefix("Bearer ")}
    listed = runner.invoke(app, ["servers", "list", "--api-url", api.url], env=env)
    assert listed.exit_code == 0, listed.output
    assert "inference workers now 2" in listed.output
    as_json = runner.invoke(app, ["servers", "list", "--json", "--api-url", api.url], env=env)
    listed_ids = {w["worker_id"] for w in json.loads(as_json.output)["workers"]}
    assert listed_ids == {first["worker_id"], second["worker_id"]}
    sent = runner.invoke(
        app,
        [
            "servers",
            "command",
            first["worker_id"],
            "set",
            "-p",
            "confidence=0.4",
            "--api-url",
            api.url,
        ],
        env=env,
    )
    assert sent.exit_code == 0, sent.output
    assert f"{first['worker_id']}: applied" in sent.output
    denied = runner.invoke(
        app,
        ["servers", "list", "--api-url", api.url],
        env={"MUGPOS_API_TOKEN": viewer["Authorization"].removeprefix("Bearer ")},
    )
    assert denied.exit_code == 1
    assert "error 403" in denied.output

    # Pause the first: its image partitions stop advancing, the second's keep going.
    images = TopicNames(api.settings.topic_prefix).images
    to_pause, to_run = _row(api, admin, first["worker_id"]), _row(api, admin, second["worker_id"])
    paused_parts = _partition_numbers(to_pause, images)
    running_parts = _partition_numbers(to_run, images)
    assert paused_parts, f"the worker to pause owns no image partition: {to_pause['partitions']}"
    assert running_parts, f"the running worker owns no image partition: {to_run['partitions']}"
    assert not set(paused_parts) & set(running_parts), (paused_parts, running_parts)
    _until(  # offsets are committed every second: start from a fully committed state
        lambda: _all_images_committed(api.settings), 30, "every image offset committed"
    )
    paused = _command(api, admin, first["worker_id"], "pause").json()
    assert paused["acks"][first["worker_id"]]["ok"] is True
    before = _committed(api.settings)
    batch = list(_publish(api.settings, paused_parts + running_parts, 4))
    advanced = _until(
        lambda: (
            (c := _committed(api.settings))
            and all(c[p] >= before[p] + 4 for p in running_parts)
            and c
        ),
        60,
        "the running worker's partitions to advance by the 4 images each was sent",
    )
    # Instead of a fixed wait: one more image through the running worker and committed, so the
    # paused worker has had at least as long again to move, had it not been paused.
    probe = running_parts[0]
    batch += list(_publish(api.settings, [probe], 1))
    _until(
        lambda: _committed(api.settings)[probe] > advanced[probe],
        60,
        "the probe image on a running partition to be committed",
    )
    held = _committed(api.settings)
    # Nothing moves, except the one message in hand if a rebalance happened meanwhile (a busy
    # machine can cause one): that message is let go so the group does not stall.
    assert sum(held[p] - before[p] for p in paused_parts) <= 1, (before, held, paused_parts)
    assert _row(api, admin, first["worker_id"])["state"] == "paused"
    # kill -9 the second: shown lost once its beats have stopped for two periods.
    processes_by_pid = {p.process.pid: p for p in processes}
    victim = processes_by_pid[second["pid"]]
    victim.kill()
    killed_at = datetime.now(UTC)

    def shown_lost() -> dict | None:
        row = _row(api, admin, second["worker_id"])
        return row if row["state"] == "lost" else None

    lost = _until(shown_lost, 10, "the killed worker shown as lost")
    assert datetime.fromisoformat(lost["heartbeat_at"]) <= killed_at  # no beat after the kill
    assert lost["heartbeat_age_s"] >= 2 * float(BEAT)  # lost for missed beats, not earlier

    # The paused worker lets go of its message in hand for the rebalance (instead of stalling
    # the group) and takes over the lost worker's partitions, still paused.
    _until(
        lambda: _owns_every_image_partition(api, admin, first["worker_id"]),
        60,
        "the paused worker to own every image partition",
    )

    resumed = _command(api, admin, first["worker_id"], "resume").json()
    assert resumed["acks"][first["worker_id"]]["ok"] is True
    _until(lambda: len(_stored(api.settings, batch)) == len(batch), 120, "all results")
    assert set(_stored(api.settings, batch).values()) == {1}  # none twice

    # Every command is in the audit log under the operator's name.
    async def audited() -> set[str]:
        client = mongo.create_client(api.settings)
        try:
            db = mongo.database(client, api.settings)
            docs = await db[ACTIVITY_LOGS].find({"user_id": "admin"}).to_list(None)
            return {d["action"] for d in docs}
        finally:
            client.close()

    assert {
        "servers.set",
        "servers.pause",
        "servers.resume",
        "servers.switch_model",
    } <= asyncio.run(audited())

    metrics = httpx.get(f"{api.url}/metrics").text
    assert f'mugpos_worker_gpu_cost_usd_total{{worker="{first["worker_id"]}"}} 0.0' in metrics


def _split_ownership(api: ApiServer, headers: dict) -> tuple[dict, dict] | None:
    """Two running workers whose heartbeats show disjoint partitions of every topic they consume
    (the images topic; the stage topics too where the workers run the stages as separate agents)
    that together cover each of them: (first row, second row), else None."""
    workers = _live_with_partitions(api, headers, 2)
    if workers is None:
        return None
    every = set(range(api.settings.topic_partitions))
    for topic in TopicNames(api.settings.topic_prefix).consumed():
        mine, theirs = (owned(w, topic) for w in workers)
        if not mine and not theirs and topic != TopicNames(api.settings.topic_prefix).images:
            continue  # a topic these workers do not consume (the stage topics of fused workers)
        if not mine or not theirs or mine & theirs or mine | theirs != every:
            return None
    return workers[0], workers[1]


async def _group_members(settings: Settings, group: str) -> set[str]:
    async with admin_client(settings) as admin:
        return (await group_state(admin, group))[1]


async def _drain_watching_the_group(
    api: ApiServer, headers: dict, worker_id: str, members: set[str], group: str
) -> tuple[dict, float]:
    """Drain a worker while polling the pipeline group. Returns the command's reply and the last
    moment (epoch seconds, taken before asking) at which no other member could yet own the
    drained worker's partitions: the group had not yet settled without it. A member is handed
    partitions in its SyncGroup answer, which the coordinator sends once the group is Stable
    again; so until the group is seen Stable without the drained member (through the
    rebalance its leaving starts), its partitions were its own or nobody's. Membership alone
    is a tighter bound than that and lost the race with a worker that finishes its last batch
    and leaves between two polls."""
    async with admin_client(api.settings) as admin:
        asked = time.time()
        state, now = await group_state(admin, group)
        assert (state, now) == ("Stable", members), (
            f"the group changed before the drain: {members} -> {state} {now}"
        )
        still_there = asked
        command = asyncio.create_task(asyncio.to_thread(_command, api, headers, worker_id, "drain"))
        deadline = asked + 90
        while True:
            asked = time.time()
            state, now = await group_state(admin, group)
            if members <= now or state != "Stable":
                still_there = asked
            else:
                assert len(members - now) == 1, f"more than one member left: {members} -> {now}"
                break
            assert asked < deadline, "the group did not settle without the drained worker in 90 s"
            await asyncio.sleep(0.05)
        reply = await command
    assert reply.status_code == 202, reply.text
    return reply.json(), still_there


class _Attribution:
    """Which input partition each output record was produced from: a result from its request's
    record on the detected topic (split workers) or else from the image partition its input was
    published to (fused workers); a detected record from the prepared topic; a prepared record
    from the image partition. The owner of that partition produced it."""

    def __init__(self, settings: Settings, sent: dict[str, int], records: dict[str, list]) -> None:
        self.names = TopicNames(settings.topic_prefix)
        self.sent = sent
        self.last = {  # one record per request id is enough: copies share the key's partition
            topic: {r.request_id: r for r in found} for topic, found in records.items()
        }

    def input_of(self, topic: str, request_id: str) -> tuple[str, int | None]:
        names = self.names
        if topic == names.results and request_id in self.last.get(names.detected, {}):
            return names.detected, self.last[names.detected][request_id].partition
        if topic == names.detected:
            found = self.last.get(names.prepared, {}).get(request_id)
            return names.prepared, found.partition if found else None
        return names.images, self.sent.get(request_id)

    def by_owner_of(self, topic: str, record: Record, partitions: dict[str, set[int]]) -> bool:
        source, partition = self.input_of(topic, record.request_id)
        return partition in partitions.get(source, set())


def _stage_records(settings: Settings, ids: list[str], timeout_s: float) -> dict[str, list]:
    """The records for `ids` on the stage topics that hold any (none for fused workers) and on
    the results topic, every one (copies included), each topic read to its end."""
    names = TopicNames(settings.topic_prefix)
    wanted = set(ids)
    records = {}
    for topic in names.stages():
        found = [r for r in asyncio.run(read_to_end(settings, topic)) if r.request_id in wanted]
        if found:
            records[topic] = asyncio.run(collect(settings, topic, ids, timeout_s))
    records[names.results] = asyncio.run(collect(settings, names.results, ids, timeout_s))
    return records


def _in_flight(port: int) -> float:
    """Inputs a worker has taken from Kafka and not yet acknowledged (its /metrics), 0 when it
    does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mugpos_images_in_flight"
    )


@pytest.mark.parametrize("stage", ["all", SPLIT], ids=["fused", "split"])
def test_drain_finishes_in_flight_work_and_redoes_nothing(
    api_deployment: Settings, tmp_path: Path, stage: str
) -> None:
    """Drain one of two workers mid-stream: it finishes what it has in hand, commits it, leaves
    the group and exits 0; the other takes over and redoes nothing.

    Who produced a record: results carry nothing that names a worker, so each output record is
    attributed through the partition of its input (see `_Attribution`) and the registry's
    partition ownership, taken from the heartbeats once the two workers split every topic they
    consume. Until the group has settled without the drained worker, no other member can
    produce from its partitions, so any such record timestamped before the last moment the group
    was seen unsettled is the drained worker's (see `_drain_watching_the_group`)."""
    env = {"MUGPOS_HEARTBEAT_INTERVAL_S": BEAT}
    settings = api_deployment
    names = TopicNames(settings.topic_prefix)
    ports = [free_port() for _ in range(2)]
    workers = [
        WorkerProcess(
            settings, tmp_path, f"d{i}", {**env, "MUGPOS_WORKER_HTTP_PORT": str(port)}, stage=stage
        )
        for i, port in enumerate(ports)
    ]
    server = start_api(settings)
    try:
        admin = login(server, "admin")
        first, second = _until(
            lambda: _split_ownership(server, admin), 90, "two workers splitting their topics"
        )
        ours = {topic: owned(first, topic) for topic in names.consumed()}
        group = worker_group(settings, stage)
        members = asyncio.run(_group_members(settings, group))
        assert len(members) == 2, members
        partitions = list(range(settings.topic_partitions))
        # Mid-stream: a first wave done and committed by both workers, ...
        sent = _publish(settings, partitions, 6)
        asyncio.run(collect(settings, names.results, list(sent), 120, to_end=False))
        asyncio.run(wait_all_committed(settings, names.consumed(), 60, stage))
        # ... then the worker to drain paused, with nothing in hand, and a second wave sent: what
        # it takes of it, it holds (a paused worker admits input and waits), so the drain
        # certainly finds work in hand, however fast this machine is.
        paused = _command(server, admin, first["worker_id"], "pause").json()
        assert paused["acks"][first["worker_id"]]["ok"] is True
        sent |= _publish(settings, partitions, 24)
        ids = list(sent)
        port = ports[[w.process.pid for w in workers].index(first["pid"])]
        _until(lambda: _in_flight(port), 60, "the paused worker to hold input in hand")
        reply, still_there = asyncio.run(
            _drain_watching_the_group(server, admin, first["worker_id"], members, group)
        )
        assert reply["acks"][first["worker_id"]]["ok"] is True
        issued_ms = datetime.fromisoformat(reply["issued_at"]).timestamp() * 1000
        drained = {w.process.pid: w for w in workers}[first["pid"]]
        assert drained.process.wait(timeout=60) == 0
        asyncio.run(collect(settings, names.results, ids, 120, to_end=False))
        asyncio.run(wait_all_committed(settings, names.consumed(), 60, stage))
        _until(
            lambda: _owns_every_image_partition(server, admin, second["worker_id"]),
            30,
            "the remaining worker to own every image partition",
        )
    finally:
        server.stop()
        for worker in workers:
            worker.stop()

    # With every offset committed, nothing is still on its way: read each topic to its end.
    records = _stage_records(settings, ids, 30)
    attribution = _Attribution(settings, sent, records)

    def producer(topic: str, record: Record) -> str:
        if not attribution.by_owner_of(topic, record, ours):
            return "remaining"
        # Past the bound, either worker may have produced it.
        return "drained" if record.timestamp_ms < still_there * 1000 else "either"

    def shown(topic: str, record: Record) -> str:
        at = (record.timestamp_ms - issued_ms) / 1000
        return f"{record.partition}@{record.offset} {at:+.2f} s {producer(topic, record)}"

    by_drained = {
        topic: [r for r in found if producer(topic, r) == "drained"]
        for topic, found in records.items()
    }
    after_drain = {
        topic: [r.request_id for r in found if r.timestamp_ms >= issued_ms]
        for topic, found in by_drained.items()
    }
    print(
        "records certainly by the drained worker (all / after the drain command):",
        {topic: (len(by_drained[topic]), len(after_drain[topic])) for topic in records},
    )
    redone = {
        topic: not_exactly_once(by_request_id(found), ids) for topic, found in records.items()
    }
    described = {  # partition@offset, time from the drain command, producer
        topic: {
            rid: [shown(topic, r) for r in by_request_id(records[topic]).get(rid, [])]
            for rid in bad
        }
        for topic, bad in redone.items()
        if bad
    }
    assert not described, (
        f"request ids with other than exactly one record (partition@offset, time after the drain "
        f"command, producer), per topic: {described}"
    )
    assert set(_stored(settings, ids).values()) == {1}
    assert by_drained[names.results], (
        "no result is attributable to the drained worker: it produced none before it left"
    )
    assert any(after_drain.values()), (
        "the drained worker produced nothing after the drain command: no in-flight work of its "
        "was finished by it"
    )


def test_an_idle_worker_drains_and_exits(api_deployment: Settings, tmp_path: Path) -> None:
    env = {"MUGPOS_HEARTBEAT_INTERVAL_S": BEAT, "MUGPOS_IDLE_SHUTDOWN_S": "3"}
    idle = WorkerProcess(api_deployment, tmp_path, "idle", env)
    try:
        assert idle.process.wait(timeout=90) == 0
    finally:
        idle.stop()
    assert "MUGPOS_IDLE_SHUTDOWN_S=3" in idle.log_path.read_text()
