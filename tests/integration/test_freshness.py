"""Fresh results for whoever is waiting, through a real worker: a source's `max_age_s` expires
frames older than it when the pipeline reaches them (a camera's backlog after an outage) without
inference, while current frames of the same source, and pictures of other sources however old,
are analysed; and an upload goes ahead of a camera backlog."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from core.config import Settings
from core.sources import SourceSpec
from infra import mongo
from infra.sources_store import SourcesRepository
from schemas.topics import TopicNames
from tests.integration.api_server import login, start_api
from tests.integration.kafka_io import collect, publish, read_to_end, results
from tests.integration.workers import WorkerProcess, scene_jpeg

SOURCE = "door-cam"
MAX_AGE_S = 60.0


async def _register(settings: Settings) -> None:
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        spec = SourceSpec.model_validate({"name": "door", "max_age_s": MAX_AGE_S})
        await SourcesRepository(db).put(SOURCE, spec, "test")
    finally:
        client.close()


async def test_a_backlog_older_than_max_age_expires_and_current_frames_are_analysed(
    pipeline: Settings,
) -> None:
    await _register(pipeline)
    now = datetime.now(UTC)
    picture = scene_jpeg(7, 320)

    def frame(rid: str, source: str, taken: datetime) -> tuple:
        headers = [("source-id", source.encode()), ("captured-at", taken.isoformat().encode())]
        return (rid, picture, headers, 0)

    stale = [
        frame(f"stale-{i}", SOURCE, now - timedelta(minutes=10, seconds=i)) for i in range(200)
    ]
    current = [frame(f"current-{i}", SOURCE, now + timedelta(seconds=i)) for i in range(2)]
    other = [frame("other-old", "hall-cam", now - timedelta(hours=1))]  # no max_age_s
    await publish(pipeline, [*stale, *current, *other])
    ids = [item[0] for item in (*stale, *current, *other)]
    got = results(await collect(pipeline, TopicNames(pipeline.topic_prefix).results, ids, 180))
    final = {rid: found[-1] for rid, found in got.items()}
    assert {final[item[0]].status for item in stale} == {"expired"}
    expired = final["stale-0"]
    assert expired.error is not None
    assert (expired.error.stage, expired.error.reason) == ("preprocess", "expired")
    assert "up to 60 s old" in expired.error.message
    assert expired.detections == []
    assert expired.model is None, "no inference for an expired frame"
    assert [final[item[0]].status for item in current] == ["ok", "ok"]
    assert final["other-old"].status == "ok"


def test_an_upload_is_analysed_ahead_of_a_camera_backlog(
    api_deployment: Settings, tmp_path: Path
) -> None:
    """Uploads travel on the uploads topic, which workers take first: an upload made behind 200
    camera frames is answered while most of them still wait (on the images topic it would
    have queued behind its partition's share of them)."""
    backlog = [f"cam-{i}" for i in range(200)]
    picture = scene_jpeg(3, 320)
    names = TopicNames(api_deployment.topic_prefix)
    frames = [(rid, picture, [("source-id", b"shelf-cam")], None) for rid in backlog]
    asyncio.run(publish(api_deployment, frames))  # before any worker: a backlog from the start
    worker = WorkerProcess(api_deployment, tmp_path, "worker")
    server = start_api(api_deployment)
    try:
        headers = login(server, "analyst")
        asyncio.run(collect(api_deployment, names.results, backlog, 120, any_of=True))
        reply = httpx.post(
            f"{server.url}/api/v1/analyze",
            headers=headers,
            params={"wait": 30_000},
            files={"image": ("desk.jpg", scene_jpeg(4, 320), "image/jpeg")},
            timeout=90,
        )
        done = asyncio.run(read_to_end(api_deployment, names.results))
        asyncio.run(collect(api_deployment, names.results, backlog, 180))  # all of it, in the end
    finally:
        server.stop()
        worker.stop()
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "ok"
    analysed = {r.request_id for r in done} & set(backlog)
    assert len(analysed) < len(backlog) / 2, f"{len(analysed)} camera frames went first"
