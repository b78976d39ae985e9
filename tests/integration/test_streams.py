"""Camera streams managed through the API: `PUT /api/v1/sources/{id}/stream` against the real
API, read by the streams service (`mugpos streams run`, a child process) from an HTTP MJPEG
camera in the test, into the real Kafka broker's images topic; the health the service writes
back (connected, reconnecting, connected again), deletion, and what is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import Settings, settings_env
from infra import mongo
from infra.mongo import ACTIVITY_LOGS
from schemas.topics import TopicNames
from tests.integration.api_server import ApiServer, login
from tests.integration.kafka_io import Record, eventually, read_to_end
from tests.integration.test_ingest import MjpegCamera

SOURCE = "cam-managed"
PASSWORD = "s3cret-camera-pw"


class StreamsService:
    """`mugpos streams run` as a child process, its output kept in a file."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.log_path = folder / "streams.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, **settings_env(settings), "MUGPOS_TOPIC_PARTITIONS": "3"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "control.cli", "streams", "run"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 40) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def service(api: ApiServer, tmp_path: Path) -> Iterator[StreamsService]:
    started = StreamsService(api.settings, tmp_path)
    try:
        yield started
    finally:
        started.kill()
        print(f"--- streams service ---\n{started.output()[-6000:]}")


@pytest.fixture
def camera() -> Iterator[MjpegCamera]:
    cam = MjpegCamera()
    cam.start()
    try:
        yield cam
    finally:
        cam.stop()


def _stream_url(api: ApiServer, source_id: str = SOURCE) -> str:
    return f"{api.url}/api/v1/sources/{source_id}/stream"


def _frames(records: list[Record], source_id: str = SOURCE) -> list[Record]:
    return [r for r in records if dict(r.headers).get("source-id") == source_id.encode()]


async def _health(api: ApiServer, headers: dict[str, str]) -> dict[str, Any] | None:
    reply = await asyncio.to_thread(httpx.get, _stream_url(api), headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()["health"]


async def test_a_stream_put_through_the_api_is_read_reported_and_stopped(
    api: ApiServer, service: StreamsService, camera: MjpegCamera
) -> None:
    manager, viewer = login(api, "manager"), login(api, "viewer")
    http = httpx.AsyncClient(timeout=30)
    settings = api.settings
    topic = TopicNames(settings.topic_prefix).images
    url = camera.url.replace("http://", f"http://cam:{PASSWORD}@")
    body = {"url": url, "every_s": 0.5}
    created = await http.put(_stream_url(api), json=body, headers=manager)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["url"] == camera.url.replace("http://", "http://cam:***@")
    assert PASSWORD not in created.text
    assert (shown["every_s"], shown["on_change"], shown["change_threshold"]) == (0.5, False, 2)
    assert (shown["rtsp_transport"], shown["updated_by"], shown["health"]) == (
        "tcp",
        "manager",
        None,
    )

    # Frames of the source arrive on the images topic.
    async def arrived() -> list[Record]:
        found = _frames(await read_to_end(settings, topic))
        return found if len(found) >= 3 else []

    frames = await eventually(arrived, 60, f"3 frames of {SOURCE} on {topic}", every_s=0.5)
    meta = dict(frames[0].headers)
    assert meta["content-type"] == b"image/jpeg"
    assert meta["request-id"].decode().startswith(f"{SOURCE}-")
    assert frames[0].value[:2] == b"\xff\xd8"

    async def connected(reconnects: int = 0) -> dict[str, Any] | None:
        health = await _health(api, viewer)
        ok = (
            health is not None
            and health["state"] == "connected"
            and health["fps"] > 0
            and health["sent"] > 0
            and health["reconnects"] >= reconnects
            and health["last_frame_at"] is not None
            and datetime.now(UTC) - datetime.fromisoformat(health["last_frame_at"])
            < timedelta(seconds=5)
        )
        return health if ok else None

    health = await eventually(connected, 30, "health connected with frames", every_s=0.5)
    assert health["error"] is None
    assert health["frames_read"] >= health["sent"]
    assert health["service_id"]
    listed = (await http.get(f"{api.url}/api/v1/streams", headers=viewer)).json()
    assert [(s["source_id"], s["url"]) for s in listed] == [(SOURCE, shown["url"])]
    in_state = await http.get(
        f"{api.url}/api/v1/streams", params={"state": "reconnecting"}, headers=viewer
    )
    assert in_state.json() == []

    # The camera goes away: reconnecting, with a reason in words; it comes back: connected.
    await asyncio.to_thread(camera.stop)

    async def reconnecting() -> dict[str, Any] | None:
        health = await _health(api, viewer)
        return health if health and health["state"] == "reconnecting" else None

    health = await eventually(reconnecting, 30, "health reconnecting", every_s=0.5)
    assert "reconnecting" in health["error"]
    await asyncio.sleep(2)
    await camera.restart()
    health = await eventually(
        lambda: connected(reconnects=1), 60, "connected again after a reconnect", every_s=0.5
    )
    assert health["reconnects"] >= 1

    # Deleted: the service stops reading within its 2 s poll; nothing new arrives after.
    deleted = await http.delete(_stream_url(api), headers=manager)
    assert deleted.status_code == 204, deleted.text
    gone = await http.get(_stream_url(api), headers=viewer)
    assert (gone.status_code, gone.json()["code"]) == (404, "stream_not_found")
    assert (await http.delete(_stream_url(api), headers=manager)).status_code == 404
    await asyncio.sleep(4)  # a poll (2 s), and a frame sampled just before it, sent
    before = len(_frames(await read_to_end(settings, topic)))
    await asyncio.sleep(4)
    assert len(_frames(await read_to_end(settings, topic))) == before
    assert "stopping it" in service.output()

    await http.aclose()
    assert await asyncio.to_thread(service.stop) == 0, service.output()[-3000:]
    assert PASSWORD not in service.output()


def test_stream_writes_are_checked_replaced_and_audited(api: ApiServer, tmp_path: Path) -> None:
    manager, viewer = login(api, "manager"), login(api, "viewer")
    url = _stream_url(api, "cam-checked")
    for bad in (
        "file:///etc/passwd",
        str(tmp_path),
        f"{tmp_path}/",
        f"dir:{tmp_path}",
        "/dev/video0",
        "0",
        "clip.mp4",
        "ftp://camera.lan/video",
        "rtsp://",
        "http:///video.mjpg",
    ):
        refused = httpx.put(url, json={"url": bad}, headers=manager)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["code"] == "stream_invalid", (bad, refused.text)
    for invalid in (
        {"url": "rtsp://cam/1", "extra": 1},
        {"url": "rtsp://cam/1", "on_change": "yes"},
        {"url": "rtsp://cam/1", "every_s": 0.01},
        {"url": "rtsp://cam/1", "change_threshold": 5000},
        {"url": "rtsp://cam/1", "rtsp_transport": "http"},
    ):
        refused = httpx.put(url, json=invalid, headers=manager)
        assert (refused.status_code, refused.json()["code"]) == (422, "validation_error"), invalid
    assert httpx.get(url, headers=viewer).status_code == 404

    camera_url = f"rtsp://admin:{PASSWORD}@192.0.2.7:554/stream1"
    assert httpx.put(url, json={"url": camera_url}, headers=viewer).status_code == 403
    created = httpx.put(url, json={"url": camera_url, "on_change": True}, headers=manager)
    assert created.status_code == 201, created.text
    replaced = httpx.put(
        url, json={"url": camera_url, "every_s": 5, "rtsp_transport": "udp"}, headers=manager
    )
    assert replaced.status_code == 200, replaced.text
    now = httpx.get(url, headers=viewer).json()
    assert now["url"] == "rtsp://admin:***@192.0.2.7:554/stream1"
    assert (now["every_s"], now["on_change"], now["rtsp_transport"]) == (5.0, False, "udp")
    assert now["created_at"] == created.json()["created_at"]
    assert now["updated_at"] > created.json()["updated_at"]
    assert httpx.delete(url, headers=viewer).status_code == 403

    entries = asyncio.run(_audited(api.settings, "cam-checked"))
    actions = sorted(e["action"] for e in entries)
    assert actions == ["streams.create", "streams.update"]
    assert PASSWORD not in str(entries)


async def _audited(settings: Settings, resource: str) -> list[dict[str, Any]]:
    client = mongo.create_client(settings)
    try:
        logs = mongo.database(client, settings)[ACTIVITY_LOGS]
        return await logs.find({"resource": resource}).to_list(None)
    finally:
        client.close()
