"""A running worker's /metrics (MUGPOS_WORKER_HTTP_PORT) after it processed good and bad images:
every worker metric README "Observability" documents is there, with sane values."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.config import Settings
from infra.launchers import free_port
from schemas.topics import TopicNames
from tests.integration.kafka_io import collect, eventually, publish
from tests.integration.workers import WorkerProcess, scene_jpeg

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
GOOD, BAD = 10, 2
#: Families the worker yields only when there is something to report.
CONDITIONAL = {
    "mugpos_dependency_down_seconds",  # a dependency is down
    "mugpos_dependency_degraded",
    "mugpos_gpu_utilization_ratio",  # a GPU (NVML) is present
    "mugpos_gpu_memory_used_bytes",
    "mugpos_gpu_memory_total_bytes",
    "mugpos_gpu_temperature_celsius",
}


def documented_worker_metrics() -> set[str]:
    """The names README's metric table lists for the worker."""
    section = README.read_text().split("### Metrics", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(mugpos_\w+)` \| (\w+) \|[^|]*\| (\w+(?:, \w+)?) \|", section, re.M)
    return {name for name, _, where in rows if "worker" in where}


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_a_running_worker_exports_every_documented_metric(
    deployment: Settings, tmp_path: Path
) -> None:
    port = free_port()
    worker = WorkerProcess(deployment, tmp_path, "metrics", {"MUGPOS_WORKER_HTTP_PORT": str(port)})
    url = f"http://127.0.0.1:{port}/metrics"
    names = TopicNames(deployment.topic_prefix)
    good = [f"m-ok-{i}" for i in range(GOOD)]
    bad = [f"m-bad-{i}" for i in range(BAD)]
    try:
        await publish(
            deployment,
            [(rid, scene_jpeg(i, 320), []) for i, rid in enumerate(good)]
            + [(rid, b"this is no image", []) for rid in bad],
        )
        await collect(deployment, names.results, good + bad, 180)

        async def scraped() -> str | None:
            async with httpx.AsyncClient() as client:
                text = (await client.get(url, timeout=10)).text
            # Lag is known once the worker fetched and committed (every MUGPOS_COMMIT_INTERVAL_S).
            return text if "mugpos_consumer_lag{" in text else None

        text = await eventually(scraped, 30, "the worker's /metrics with its consumer lag")
    finally:
        worker.stop()

    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    documented = documented_worker_metrics()
    assert len(documented) >= 15, documented
    missing = {
        n
        for n in documented - CONDITIONAL
        if n not in families and n.removesuffix("_total") not in families
    }
    assert not missing, missing
    ours = {n for n in families if n.startswith("mugpos_") and not n.endswith("_created")}
    undocumented = {n for n in ours if n not in documented and f"{n}_total" not in documented}
    assert not undocumented, undocumented
    assert not any(n.startswith("mugpos_gpu_") for n in ours)  # a CPU: nothing, and no error

    s = _samples(text)
    for stage in ("preprocess", "inference", "analysis", "sink"):
        assert _value(s, "mugpos_stage_duration_seconds_count", stage=stage) >= 1, stage
        assert _value(s, "mugpos_stage_duration_seconds_sum", stage=stage) > 0, stage
    assert _value(s, "mugpos_stage_duration_seconds_count", stage="preprocess") >= GOOD
    assert _value(s, "mugpos_inference_batch_size_sum") >= GOOD  # every good image, in batches
    assert 1 <= _value(s, "mugpos_inference_batch_size_count") <= GOOD
    assert _value(s, "mugpos_batch_wait_seconds_count") >= 1
    assert _value(s, "mugpos_results_total", status="ok") >= GOOD
    assert _value(s, "mugpos_results_total", status="rejected") >= BAD
    letters = [x for x in s["mugpos_dead_letters_total"] if x.labels["stage"] == "preprocess"]
    assert sum(x.value for x in letters) >= BAD
    assert all(x.labels["reason"] for x in letters)
    assert _value(s, "mugpos_model_load_seconds_count") >= 1
    assert _value(s, "mugpos_model_memory_bytes") > 0
    assert _value(s, "mugpos_worker_state", state="running") == 1
    assert sum(x.value for x in s["mugpos_worker_state"]) == 1
    assert _value(s, "mugpos_images_in_flight", stage="pipeline") >= 0
    assert {x.labels["pool"] for x in s["mugpos_queue_depth"]} == {"decode", "inference"}
    lags = s["mugpos_consumer_lag"]
    assert {x.labels["topic"] for x in lags} == {names.images}
    assert all(x.value >= 0 and x.labels["group"] == names.pipeline_group for x in lags)
