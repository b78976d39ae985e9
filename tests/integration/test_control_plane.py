"""Operators see and steer real `mugpos worker` processes through the API: registry, lost
workers, pause/resume, live max_batch, drain-and-stop, idle shutdown, and who may do it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from control.cli import app
from core.config import Settings
from infra import mongo
from infra.kafka_admin import KafkaAdmin
from infra.mongo import ACTIVITY_LOGS, ANALYSIS_RESULTS
from schemas.topics import TopicNames
from tests.integration.api_server import ApiServer, login, start_api
from tests.integration.workers import WorkerProcess, scene_jpeg

BEAT = "1"  # heartbeat interval (s) for these workers


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


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
    owned = [p for w in workers for p in w["partitions"] if p.startswith(images)]
    if len(workers) == count and len(owned) == api.settings.topic_partitions:
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


async def _publish(settings: Settings, partitions: list[int], per_partition: int) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    ids = []
    try:
        for partition in partitions:
            for n in range(per_partition):
                request_id = f"cp-{partition}-{n}-{time.monotonic_ns()}"
                await producer.send(
                    TopicNames(settings.topic_prefix).images,
                    scene_jpeg(n, 320),
                    partition=partition,
                    headers=[("request-id", request_id.encode())],
                )
                ids.append(request_id)
        await producer.flush()
    finally:
        await producer.stop()
    return ids


async def _images_lag(settings: Settings) -> list:
    admin = KafkaAdmin(settings.kafka_bootstrap)
    try:
        names = TopicNames(settings.topic_prefix)
        return await admin.consumer_lag(names.pipeline_group, [names.images])
    finally:
        await admin.close()


def _committed(settings: Settings) -> dict[int, int]:
    return {x.partition: x.committed for x in asyncio.run(_images_lag(settings))}


async def _stored(settings: Settings, ids: list[str]) -> dict[str, int]:
    client = mongo.create_client(settings)
    try:
        docs = (
            await mongo.database(client, settings)[ANALYSIS_RESULTS]
            .find({"request_id": {"$in": ids}}, {"request_id": 1})
            .to_list(None)
        )
    finally:
        client.close()
    counts: dict[str, int] = {}
    for doc in docs:
        counts[doc["request_id"]] = counts.get(doc["request_id"], 0) + 1
    return counts


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
        assert worker["model"] == "mugdet-synth:1.1.0"
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

    # Live max_batch: acknowledged within a second, and the batches follow.
    issued = time.monotonic()
    reply = _command(api, admin, "all", "set", max_batch=2)
    assert reply.status_code == 202
    assert {w: a["ok"] for w, a in reply.json()["acks"].items()} == {
        first["worker_id"]: True,
        second["worker_id"]: True,
    }
    assert time.monotonic() - issued < 2  # the whole HTTP exchange, audit write included
    sent_at = datetime.fromisoformat(reply.json()["issued_at"])
    for ack in reply.json()["acks"].values():  # applied within a second of being issued
        assert (datetime.fromisoformat(ack["applied_at"]) - sent_at).total_seconds() < 1
    ids = asyncio.run(_publish(api.settings, list(range(api.settings.topic_partitions)), 6))
    _until(lambda: len(asyncio.run(_stored(api.settings, ids))) == len(ids), 120, "18 results")
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
    paused_parts = _partition_numbers(first, images)
    running_parts = _partition_numbers(second, images)
    _until(  # offsets are committed every second: start from a fully committed state
        lambda: all(x.lag == 0 for x in asyncio.run(_images_lag(api.settings))),
        30,
        "every image offset committed",
    )
    paused = _command(api, admin, first["worker_id"], "pause").json()
    assert paused["acks"][first["worker_id"]]["ok"] is True
    before = _committed(api.settings)
    batch = asyncio.run(_publish(api.settings, paused_parts + running_parts, 4))
    _until(
        lambda: all(_committed(api.settings)[p] >= before[p] + 4 for p in running_parts),
        60,
        "the running worker's partitions to advance",
    )
    time.sleep(2)
    held = _committed(api.settings)
    # Nothing moves, except the one message in hand if a rebalance happened meanwhile (a busy
    # machine can cause one): that message is let go so the group does not stall.
    assert sum(held[p] - before[p] for p in paused_parts) <= 1
    assert {w["worker_id"]: w["state"] for w in _servers(api, admin)["workers"]}[
        first["worker_id"]
    ] == "paused"
    # kill -9 the second: shown lost within two heartbeat periods.
    processes_by_pid = {p.process.pid: p for p in processes}
    victim = processes_by_pid[second["pid"]]
    victim.kill()
    killed = time.monotonic()
    _until(
        lambda: (
            {w["worker_id"]: w["state"] for w in _servers(api, admin)["workers"]}[
                second["worker_id"]
            ]
            == "lost"
        ),
        10,
        "the killed worker shown as lost",
    )
    assert time.monotonic() - killed <= 2 * float(BEAT) + 1.0  # + one beat of phase, + polling

    # The paused worker lets go of its message in hand for the rebalance (instead of stalling
    # the group) and takes over the lost worker's partitions, still paused.
    _until(
        lambda: _owns_every_image_partition(api, admin, first["worker_id"]),
        60,
        "the paused worker to own every image partition",
    )

    resumed = _command(api, admin, first["worker_id"], "resume").json()
    assert resumed["acks"][first["worker_id"]]["ok"] is True
    _until(lambda: len(asyncio.run(_stored(api.settings, batch))) == len(batch), 120, "all results")
    assert set(asyncio.run(_stored(api.settings, batch)).values()) == {1}  # none twice

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
    assert f'worker_gpu_cost_usd{{worker="{first["worker_id"]}"}} 0.0' in metrics


def test_drain_finishes_in_flight_work_and_idle_workers_exit(
    api_deployment: Settings, tmp_path: Path
) -> None:
    env = {"MUGPOS_HEARTBEAT_INTERVAL_S": BEAT}
    workers = [WorkerProcess(api_deployment, tmp_path, f"d{i}", env) for i in range(2)]
    server = start_api(api_deployment)
    try:
        admin = login(server, "admin")
        first, second = _until(lambda: _live_with_partitions(server, admin, 2), 90, "two workers")
        ids = asyncio.run(
            _publish(server.settings, list(range(server.settings.topic_partitions)), 8)
        )
        reply = _command(server, admin, first["worker_id"], "drain")
        assert reply.json()["acks"][first["worker_id"]]["ok"] is True
        drained = {w.process.pid: w for w in workers}[first["pid"]]
        assert drained.process.wait(timeout=60) == 0
        _until(lambda: len(asyncio.run(_stored(server.settings, ids))) == len(ids), 120, "results")
        assert set(asyncio.run(_stored(server.settings, ids)).values()) == {1}
        _until(
            lambda: _owns_every_image_partition(server, admin, second["worker_id"]),
            30,
            "the remaining worker to own every image partition",
        )
    finally:
        server.stop()
        for worker in workers:
            worker.stop()

    idle = WorkerProcess(api_deployment, tmp_path, "idle", {**env, "MUGPOS_IDLE_SHUTDOWN_S": "3"})
    try:
        assert idle.process.wait(timeout=90) == 0
    finally:
        idle.stop()
    assert "MUGPOS_IDLE_SHUTDOWN_S=3" in idle.log_path.read_text()
