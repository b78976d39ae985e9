"""Upload → 202 → result, through a real `mugpos worker`: via `wait`, GET, WebSocket and SSE;
50 concurrent uploads; rules written through the API reach the worker; history and dashboard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from core.config import Settings
from core.models.manifest import DEFAULT_MODEL
from schemas.messages import AnalysisResult
from tests.integration.api_server import ApiServer, login, start_api
from tests.integration.workers import WorkerProcess, scene_jpeg


@pytest.fixture
def stack(api_deployment: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    """API + one worker on one fresh deployment."""
    worker = WorkerProcess(api_deployment, tmp_path, "worker")
    server = start_api(api_deployment)
    try:
        yield server
    finally:
        server.stop()
        worker.stop()


def _upload(api: ApiServer, headers: dict, seed: int, **params: object) -> httpx.Response:
    return httpx.post(
        f"{api.url}/api/v1/analyze",
        headers=headers,
        params=params,
        data={"source_id": "desk-1"},
        files={"image": (f"scene-{seed}.jpg", scene_jpeg(seed), "image/jpeg")},
        timeout=120,
    )


async def _first_result_on_websocket(api: ApiServer, token: str, ready: asyncio.Event) -> dict:
    url = f"ws://127.0.0.1:{api.port}/ws/control-plane?token={token}&source_id=desk-1"
    async with websockets.connect(url) as socket:
        hello = orjson.loads(await socket.recv())
        assert hello["type"] == "hello"
        ready.set()
        while True:
            event = orjson.loads(await asyncio.wait_for(socket.recv(), 120))
            if event["type"] == "result":
                return event["data"]


def _sse_events(api: ApiServer, headers: dict, request_id: str) -> list[tuple[str, dict]]:
    events, name = [], None
    with httpx.stream(
        "GET",
        f"{api.url}/api/v1/analyze/{request_id}/events",
        params={"timeout": 120},
        headers=headers,
        timeout=130,
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, orjson.loads(line.split(":", 1)[1])))
    return events


def test_upload_then_result_by_wait_get_websocket_and_sse(stack: ApiServer) -> None:
    manager, analyst = login(stack, "manager"), login(stack, "analyst")
    rule = httpx.post(
        f"{stack.url}/api/v1/rules",
        json={"text": "Every mug must be on a coaster."},
        headers=manager,
    )
    assert rule.status_code == 201
    rule_id = rule.json()["rule_id"]

    async def websocket_and_wait() -> tuple[dict, httpx.Response]:
        ready = asyncio.Event()
        token = analyst["Authorization"].removeprefix("Bearer ")
        listener = asyncio.create_task(_first_result_on_websocket(stack, token, ready))
        await asyncio.wait_for(ready.wait(), 30)
        waited = await asyncio.to_thread(_upload, stack, analyst, 11, wait=30_000)
        return await asyncio.wait_for(listener, 120), waited

    pushed, waited = asyncio.run(websocket_and_wait())
    assert waited.status_code == 200, waited.text
    result = AnalysisResult.model_validate(waited.json())
    assert result.status == "ok"
    assert result.source_id == "desk-1"
    assert result.positioning is not None
    assert [v.rule_id for v in result.verdicts] == [rule_id]  # the API's rule reached the worker
    assert pushed["request_id"] == result.request_id

    fetched = httpx.get(f"{stack.url}/api/v1/analyze/{result.request_id}", headers=analyst)
    assert fetched.json()["request_id"] == result.request_id
    assert fetched.json()["detections"] == waited.json()["detections"]

    accepted = _upload(stack, analyst, 12)
    assert accepted.status_code == 202
    request_id = accepted.json()["request_id"]
    events = _sse_events(stack, analyst, request_id)
    assert [name for name, _ in events] == ["pending", "result"]
    assert events[1][1]["request_id"] == request_id

    original = httpx.get(f"{stack.url}/api/v1/analyze/{request_id}/image", headers=analyst)
    assert original.content == scene_jpeg(12)
    annotated = httpx.get(
        f"{stack.url}/api/v1/analyze/{request_id}/image",
        params={"annotated": "true"},
        headers=analyst,
    )
    assert annotated.status_code == 200
    assert annotated.headers["content-type"] == "image/jpeg"
    assert annotated.content[:3] == b"\xff\xd8\xff"
    assert annotated.content != original.content

    page = httpx.get(
        f"{stack.url}/api/v1/analyze",
        params={"source_id": "desk-1", "limit": 1},
        headers=analyst,
    ).json()
    second = httpx.get(
        f"{stack.url}/api/v1/analyze",
        params={"source_id": "desk-1", "limit": 1, "cursor": page["next_cursor"]},
        headers=analyst,
    ).json()
    assert {page["items"][0]["request_id"], second["items"][0]["request_id"]} == {
        request_id,
        result.request_id,
    }
    failed = httpx.get(
        f"{stack.url}/api/v1/analyze", params={"failed_rule": rule_id}, headers=analyst
    ).json()["items"]
    expected = {
        r["request_id"]
        for r in (waited.json(), events[1][1])
        if any(v["rule_id"] == rule_id and v["passed"] is False for v in r["verdicts"])
    }
    assert {item["request_id"] for item in failed} == expected

    summary = httpx.get(f"{stack.url}/api/v1/dashboard/summary", headers=analyst).json()
    assert summary["results"] == 2
    assert {"preprocess", "inference", "analysis", "total"} <= set(summary["latency_ms"])
    assert summary["models"] == {DEFAULT_MODEL: 2}
    assert isinstance(summary["consumer_lag"], list)
    assert {row["topic"] for row in summary["consumer_lag"]} == {
        f"{stack.settings.topic_prefix}.images.v1",
        f"{stack.settings.topic_prefix}.uploads.v1",
        f"{stack.settings.topic_prefix}.stage.prepared.v1",
        f"{stack.settings.topic_prefix}.stage.detected.v1",
    }
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert (
        'mugpos_http_requests_total{endpoint="/api/v1/analyze",method="POST",status="202"}'
        in metrics
    )
    assert 'mugpos_pipeline_stage_duration_seconds_count{stage="inference"} 2.0' in metrics
    assert 'mugpos_analysis_requests_total{outcome="accepted"} 2.0' in metrics
    # The lag the dashboard shows, for Prometheus: read from Kafka at scrape time, per partition.
    assert "mugpos_consumer_lag_up 1.0" in metrics
    images = f"{stack.settings.topic_prefix}.images.v1"
    lag_lines = [line for line in metrics.splitlines() if line.startswith("mugpos_consumer_lag{")]
    assert any(f'topic="{images}"' in line and 'partition="0"' in line for line in lag_lines)
    assert all('group="' in line and float(line.rsplit(" ", 1)[1]) >= 0 for line in lag_lines)


def test_fifty_concurrent_uploads_all_complete(stack: ApiServer) -> None:
    headers = login(stack, "analyst")

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=180) as client:
            scenes = [scene_jpeg(100 + i) for i in range(50)]
            return await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/analyze",
                        params={"wait": 30_000},
                        files={"image": (f"s{i}.jpg", scene, "image/jpeg")},
                    )
                    for i, scene in enumerate(scenes)
                )
            )

    replies = asyncio.run(run())
    assert [r.status_code for r in replies].count(202) + [r.status_code for r in replies].count(
        200
    ) == 50
    ids = {r.json()["request_id"] for r in replies}
    assert len(ids) == 50
    for request_id in ids:  # those that outlived `wait` finish shortly after
        events = _sse_events(stack, headers, request_id)
        assert events[-1][0] == "result", request_id
        assert events[-1][1]["status"] == "ok"
