"""One trace per image across processes and Kafka hops, read back from the span file every
process appends to (MUGPOS_OTEL_FILE): the API's upload span, every stage span of a fused worker
and of a split deployment (three single-stage workers), and the result's `trace_id`."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control.console import mugpos_argv
from core.config import ENV_PREFIX, Settings, settings_env
from infra.launchers import ManagedProcess, free_port
from infra.tracing import read_spans, trace_tree
from schemas.messages import AnalysisResult
from schemas.topics import TopicNames
from tests.integration.api_server import PASSWORD, add_role_users, api_settings
from tests.integration.kafka_io import collect, publish, results
from tests.integration.workers import WorkerProcess, scene_jpeg

# What a fused worker records of one image (the sink's Redis write only where Redis is set).
FUSED_SPANS = {
    "process pipeline",
    "intake",
    "decode",
    "batch wait",
    "inference",
    "positioning",
    "rules",
    "sink mongodb",
    "sink object store",
    "publish",
}


def _traced(settings: Settings, spans: Path) -> Settings:
    return api_settings(settings, otel_file=spans, otel_sample_ratio=1.0)


def _spans_of(
    path: Path, trace_id: str, until: set[str], timeout_s: float = 20, *, root: bool = False
) -> list[dict]:
    """The trace's spans once every name in `until` is there (exporters write in batches), and
    with `root` once the root is too: a request span ends, and is written, after its children
    (the API's upload span after the result it waited for)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = [s for s in read_spans(path) if s["trace_id"] == trace_id]
        named = until <= {s["name"] for s in spans}
        rooted = not root or any(s["parent_id"] is None for s in spans)
        if (named and rooted) or time.monotonic() > deadline:
            return spans
        time.sleep(0.25)


def _assert_one_tree(spans: list[dict], trace_id: str, *, client_parent: str | None = None):
    """Every span hangs off one root (or off the client's own span, not recorded here)."""
    tree = trace_tree(spans, trace_id)
    assert len(tree) == len(spans)
    roots = [s for depth, s in tree if depth == 0]
    assert len(roots) == 1, [(s["name"], s["service"]) for s in roots]
    if client_parent is not None:
        assert roots[0]["parent_id"] == client_parent
    return roots[0]


@pytest.fixture
def traced_stack(deployment: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str, Path]]:
    """The API (`mugpos api`, a process of its own) and one fused worker, both tracing to one file."""
    spans = tmp_path / "spans.jsonl"
    settings = _traced(deployment, spans)
    asyncio.run(add_role_users(settings))
    worker = WorkerProcess(settings, tmp_path, "worker")
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    api = ManagedProcess(
        "api",
        mugpos_argv("api", "--port", str(port)),
        tmp_path / "api.log",
        cwd=tmp_path,
        env=inherited | settings_env(settings),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        api.start(lambda: _answers(f"{url}/health"), timeout_s=90)
        yield settings, url, spans
    finally:
        api.stop()
        worker.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_one_trace_joins_upload_stages_and_result(traced_stack) -> None:
    settings, url, spans_file = traced_stack
    token = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": "analyst", "password": PASSWORD}
    ).json()["access_token"]
    reply = httpx.post(
        f"{url}/api/v1/analyze",
        params={"wait": 30000},
        headers={"Authorization": f"Bearer {token}"},
        data={"source_id": "desk-t"},
        files={"image": ("scene.jpg", scene_jpeg(7), "image/jpeg")},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    result = AnalysisResult.model_validate(reply.json())
    assert result.status == "ok"
    assert result.trace_id is not None
    assert len(result.trace_id) == 32

    wanted = FUSED_SPANS | ({"sink redis"} if settings.redis_url else set())
    spans = _spans_of(spans_file, result.trace_id, wanted, root=True)
    names = {s["name"] for s in spans}
    assert wanted <= names, sorted(wanted - names)
    root = _assert_one_tree(spans, result.trace_id)
    # The upload's server span (FastAPI instrumentation) is the root; its Kafka send is the
    # worker's parent; the worker's spans name the image.
    assert root["service"] == "mugpos-api"
    assert root["kind"] == "SERVER"
    assert root["attributes"]["mugpos.request_id"] == result.request_id
    images = TopicNames(settings.topic_prefix).uploads
    send = next(s for s in spans if s["name"] == f"{images} send")
    assert send["service"] == "mugpos-api"
    assert send["kind"] == "PRODUCER"
    image = next(s for s in spans if s["name"] == "process pipeline")
    assert image["service"] == "mugpos-worker"
    assert image["parent_id"] == send["span_id"]
    assert image["attributes"]["mugpos.request_id"] == result.request_id
    inference = next(s for s in spans if s["name"] == "inference")
    assert inference["attributes"]["mugpos.batch_size"] >= 1
    assert inference["attributes"]["mugpos.model"] == f"{result.model.name}:{result.model.version}"
    assert inference["attributes"]["mugpos.device"] == "cpu"
    assert {"trace_id": result.trace_id, "span_id": image["span_id"]} in inference["links"]
    # Driver instrumentation nests in the stage that called it (MongoDB under the sink's write).
    mongo = next(s for s in spans if s["name"] == "sink mongodb")
    assert any(s["parent_id"] == mongo["span_id"] for s in spans)
    # The result published on the results topic carries the trace on, to the API's follower.
    results_topic = TopicNames(settings.topic_prefix).results
    received = _spans_of(spans_file, result.trace_id, {f"{results_topic} receive"})
    assert any(
        s["name"] == f"{results_topic} receive" and s["service"] == "mugpos-api" for s in received
    )


async def test_a_split_deployment_keeps_the_clients_trace(
    deployment: Settings, tmp_path: Path
) -> None:
    """A Kafka client's own `traceparent` (sampled) goes through three single-stage workers."""
    spans_file = tmp_path / "spans.jsonl"
    settings = _traced(deployment, spans_file)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    workers = [
        WorkerProcess(settings, tmp_path, s, stage=s)
        for s in ("preprocess", "inference", "analysis")
    ]
    names = TopicNames(settings.topic_prefix)
    try:
        headers = [("traceparent", f"00-{trace_id}-{parent}-01".encode())]
        await publish(settings, [("traced-split", scene_jpeg(3), headers)])
        (result,) = results(await collect(settings, names.results, ["traced-split"], 180))[
            "traced-split"
        ]
    finally:
        for worker in workers:
            worker.stop()
    assert result.status == "ok"
    assert result.trace_id == trace_id
    stages = {"process preprocess", "process inference", "process analysis"}
    spans = await asyncio.to_thread(
        _spans_of, spans_file, trace_id, stages | {"inference", "rules", "publish"}
    )
    by_name: dict[str, list[dict]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    assert stages | {"intake", "decode", "batch wait", "inference", "positioning", "rules"} <= set(
        by_name
    ), sorted(by_name)
    _assert_one_tree(spans, trace_id, client_parent=parent)
    # Each stage's span is the child of the previous stage's Kafka send.
    sends = {s["span_id"]: s for s in spans if s["kind"] == "PRODUCER"}
    for stage in ("process inference", "process analysis"):
        (span,) = by_name[stage]
        assert span["parent_id"] in sends, stage
