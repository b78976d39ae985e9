"""The live socket's `latest_per_source_ms` against the real API: a burst of results from one
camera reaches a throttled client as fewer frames, the last being the newest, whose `coalesced`
counts add up to the burst; an unthrottled client gets every result; uploads are never held."""

from __future__ import annotations

import asyncio

import orjson
import websockets
from aiokafka import AIOKafkaProducer

from schemas.topics import TopicNames
from tests.integration.api_server import ApiServer, login

BURST = 10


async def _send(producer: AIOKafkaProducer, topic: str, request_id: str, source: str) -> None:
    """One result on one partition: the burst then arrives at the API in the order it was sent."""
    result = {"request_id": request_id, "source_id": source, "status": "ok"}
    await producer.send_and_wait(topic, orjson.dumps(result), key=request_id.encode(), partition=0)


async def _results(socket, until: set[str], timeout_s: float) -> list[dict]:
    """Result frames until every id in `until` was seen and `timeout_s` passed without more."""
    frames: list[dict] = []
    while True:
        try:
            event = orjson.loads(await asyncio.wait_for(socket.recv(), timeout_s))
        except TimeoutError:
            seen = {f["data"]["request_id"] for f in frames}
            assert until <= seen, f"missing {until - seen}"
            return frames
        if event["type"] == "result":
            frames.append(event)


async def test_a_camera_burst_reaches_a_throttled_client_as_its_latest_result(
    api: ApiServer,
) -> None:
    token = login(api, "viewer")["Authorization"].removeprefix("Bearer ")
    base = f"ws://127.0.0.1:{api.port}/ws/control-plane?token={token}"
    topic = TopicNames(api.settings.topic_prefix).results
    producer = AIOKafkaProducer(bootstrap_servers=api.settings.kafka_bootstrap)
    await producer.start()
    try:
        async with (
            websockets.connect(f"{base}&latest_per_source_ms=1000") as throttled,
            websockets.connect(base) as plain,
        ):
            for socket in (throttled, plain):
                assert orjson.loads(await socket.recv())["type"] == "hello"
            # The API follows the results topic from its end once assigned: probe until it does.
            for attempt in range(60):
                await _send(producer, topic, f"probe-{attempt}", "api")
                try:
                    await asyncio.wait_for(plain.recv(), 1)
                    break
                except TimeoutError:
                    continue
            await _results(throttled, set(), 1.5)  # the probes: uploads, passed through
            await _results(plain, set(), 0.5)

            burst = [f"cam-{n}" for n in range(BURST)]
            for request_id in burst:
                await _send(producer, topic, request_id, "desk-cam")
            await _send(producer, topic, "upload-1", "api")
            everything = await _results(plain, {*burst, "upload-1"}, 1.5)
            thinned = await _results(throttled, {burst[-1], "upload-1"}, 2.5)
    finally:
        await producer.stop()

    assert [
        f["data"]["request_id"] for f in everything if f["data"]["source_id"] == "desk-cam"
    ] == burst
    camera = [f for f in thinned if f["data"]["source_id"] == "desk-cam"]
    assert len(camera) < BURST / 2, [f["data"]["request_id"] for f in camera]
    assert camera[-1]["data"]["request_id"] == burst[-1]
    assert sum(f.get("coalesced", 1) for f in camera) == BURST  # nothing lost unaccounted
    assert [f["data"]["request_id"] for f in thinned if f["data"]["source_id"] == "api"] == [
        "upload-1"
    ]
