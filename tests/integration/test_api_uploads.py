"""Every bad upload is refused up front with problem+json, and nothing reaches Kafka or storage."""

from __future__ import annotations

import asyncio
import io
import zipfile

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.config import Settings
from infra.object_store import create_object_store
from schemas.topics import TopicNames
from tests.integration.api_server import ApiServer, api_settings, login, start_api
from tests.integration.workers import scene_jpeg
from tests.unit.test_image_decode import RGB, encode, png_bomb

MAX_BYTES = 400_000


@pytest.fixture
def small_api(deployment: Settings) -> ApiServer:
    server = start_api(api_settings(deployment, max_image_bytes=MAX_BYTES))
    yield server
    server.stop()


def _gif() -> bytes:
    return encode(RGB, "GIF")


BAD_UPLOADS = {
    # name: (filename, bytes, declared content type, status, code)
    "text file": (
        "notes.txt",
        b"hello, not an image" * 10,
        "text/plain",
        415,
        "unsupported_format",
    ),
    "empty": ("empty.jpg", b"", "image/jpeg", 400, "empty_input"),
    "oversize": ("big.png", b"\x89PNG\r\n\x1a\n" + b"0" * MAX_BYTES, "image/png", 413, "too_large"),
    "lying content type": ("scene.jpg", None, "image/png", 415, "content_type_mismatch"),
    "gif": ("anim.gif", None, "image/gif", 415, "unsupported_format"),
    "png bomb": ("bomb.png", None, "image/png", 413, "too_many_pixels"),
    "truncated header": ("cut.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 20, "image/jpeg", 422, None),
}


def _payload(name: str) -> bytes:
    data = BAD_UPLOADS[name][1]
    if data is not None:
        return data
    return {
        "lying content type": scene_jpeg(1),
        "gif": _gif(),
        "png bomb": png_bomb(50_000, 50_000),
    }[name]


async def _topic_size(settings: Settings) -> int:
    topic = TopicNames(settings.topic_prefix).uploads
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def _stored_uploads(settings: Settings) -> list[str]:
    store = create_object_store(settings)
    try:
        return [info.key for info in await store.list("user-uploads/")]
    finally:
        await store.close()


def test_bad_uploads_get_problem_json_and_nothing_is_enqueued(small_api: ApiServer) -> None:
    headers = login(small_api, "analyst")
    for name, (filename, _, declared, status, code) in BAD_UPLOADS.items():
        reply = httpx.post(
            f"{small_api.url}/api/v1/analyze",
            headers=headers,
            files={"image": (filename, _payload(name), declared)},
        )
        assert reply.status_code == status, f"{name}: {reply.status_code} {reply.text}"
        assert reply.headers["content-type"] == "application/problem+json", name
        body = reply.json()
        assert body["status"] == status
        assert filename in body["detail"] or code is None or status == 413, name
        if code is not None:
            assert body["code"] == code, name
    refused = {
        "no file": {"data": {"source_id": "cam"}},
        "bad options": {
            "files": {"image": ("s.jpg", scene_jpeg(2), "image/jpeg")},
            "data": {"options": "{not json"},
        },
        "bad confidence": {
            "files": {"image": ("s.jpg", scene_jpeg(2), "image/jpeg")},
            "data": {"options": '{"confidence": 7}'},
        },
        "bad source id": {
            "files": {"image": ("s.jpg", scene_jpeg(2), "image/jpeg")},
            "data": {"source_id": "../../etc"},
        },
    }
    for name, kwargs in refused.items():
        reply = httpx.post(f"{small_api.url}/api/v1/analyze", headers=headers, **kwargs)
        assert reply.status_code == 422, f"{name}: {reply.text}"
        assert reply.headers["content-type"] == "application/problem+json"
    too_long = httpx.post(
        f"{small_api.url}/api/v1/analyze?wait=999999999",
        headers=headers,
        files={"image": ("s.jpg", scene_jpeg(2), "image/jpeg")},
    )
    assert too_long.status_code == 422
    assert asyncio.run(_topic_size(small_api.settings)) == 0
    assert asyncio.run(_stored_uploads(small_api.settings)) == []


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(deployment: Settings) -> None:
    server = start_api(api_settings(deployment, api_max_request_bytes=100_000))
    try:
        reply = httpx.post(
            f"{server.url}/api/v1/analyze",
            headers=login(server, "analyst"),
            files={"image": ("s.png", b"\x89PNG\r\n\x1a\n" + bytes(200_000), "image/png")},
        )
        assert reply.status_code == 413
        assert reply.json()["code"] == "request_too_large"
    finally:
        server.stop()


def test_batch_accepts_good_files_and_reports_bad_ones(api: ApiServer) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.jpg", scene_jpeg(4))
        zipped.writestr("notes.txt", b"not an image")
    reply = httpx.post(
        f"{api.url}/api/v1/analyze/batch",
        headers=login(api, "analyst"),
        files=[("images", ("set.zip", archive.getvalue(), "application/zip"))],
    )
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert (body["accepted"], body["refused"]) == (1, 1)
    by_name = {item["filename"]: item for item in body["items"]}
    assert by_name["a.jpg"]["request_id"].startswith("r-")
    assert by_name["notes.txt"]["error"]["code"] == "unsupported_format"
    assert asyncio.run(_topic_size(api.settings)) == 1


def test_rule_parse_errors_are_helpful(api: ApiServer) -> None:
    reply = httpx.post(
        f"{api.url}/api/v1/rules/parse",
        headers=login(api, "analyst"),
        json={"text": "Every mug must be on a coastr."},
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["code"] == "rule_syntax"
    assert body["column"] >= 1
    assert body["suggestion"] == "Every mug must be on a coaster."
    ok = httpx.post(
        f"{api.url}/api/v1/rules/parse",
        headers=login(api, "analyst"),
        json={"text": "Mugs must be at least 5 cm from the table edge."},
    )
    assert ok.status_code == 200
    assert ok.json()["explanation"] == "every mug must satisfy: edge distance ≥ 5 cm [warning]"
