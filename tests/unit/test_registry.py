"""The API's worker registry: lost after two missed beats, cost, and the scaling hint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.registry import WorkerRegistry
from core.config import Settings
from schemas.control import GpuStats, WorkerStatus


def _status(worker_id: str, age_s: float, throughput: float, gpu_seconds: float = 0.0) -> bytes:
    status = WorkerStatus(
        worker_id=worker_id,
        host="h",
        pid=1,
        stages=["analysis", "inference", "preprocess"],
        partitions=[f"p.images.v1:{worker_id[-1]}"],
        state="running",
        max_batch=8,
        max_wait_ms=50,
        throughput_per_s=throughput,
        gpu=GpuStats(present=gpu_seconds > 0),
        gpu_seconds=gpu_seconds,
        cpu_percent=1.0,
        rss_mb=100.0,
        uptime_s=10.0,
        idle_s=0.0,
        heartbeat_interval_s=2.0,
        heartbeat_at=datetime.now(UTC) - timedelta(seconds=age_s),
    )
    return status.model_dump_json().encode()


async def test_lost_cost_and_scaling_hint() -> None:
    registry = WorkerRegistry(Settings(_env_file=None, gpu_price_per_hour=3.6, scale_target_s=10))
    await registry.on_message(b"status:w0", _status("w0", 1.0, 5.0, gpu_seconds=100))
    await registry.on_message(b"status:w1", _status("w1", 4.5, 5.0))
    await registry.on_message(b"command:c-1", b"{}")  # not a status: ignored
    await registry.on_message(b"status:bad", b"not json")  # malformed: ignored
    view = registry.view({"p.images.v1:0": 120, "p.images.v1:1": 30})
    states = {w["worker_id"]: w["state"] for w in view["workers"]}
    assert states == {"w0": "running", "w1": "lost"}  # 4.5 s > 2 x 2 s
    by_id = {w["worker_id"]: w for w in view["workers"]}
    assert by_id["w0"]["cost_usd"] == 0.1  # 100 GPU-s at $3.60/h
    assert by_id["w0"]["consumer_lag"] == 120
    assert view["totals"] == {
        "workers": 2,
        "live": 1,
        "lost": 1,
        "images_last_minute": 0,
        "gpu_seconds": 100.0,
        "cost_usd": 0.1,
        "gpu_price_per_hour": 3.6,
    }
    # 150 queued, 5 img/s per live inference worker, 10 s target -> 3 workers
    assert view["scaling"]["inference_workers_needed"] == 3
    assert registry.view({})["scaling"]["inference_workers_needed"] == 1


async def test_a_degraded_worker_shows_its_dependency_outage_as_a_metric() -> None:
    from prometheus_client import generate_latest

    from api.metrics import ApiMetrics

    registry = WorkerRegistry(Settings(_env_file=None))
    degraded = WorkerStatus.model_validate_json(_status("w0", 0.5, 1.0))
    degraded = degraded.model_copy(update={"state": "degraded", "unavailable": {"mongodb": 12.5}})
    await registry.on_message(b"status:w0", degraded.model_dump_json().encode())
    view = registry.view()
    assert view["workers"][0]["state"] == "degraded"
    metrics = ApiMetrics()
    metrics.observe_workers(view)
    text = generate_latest(metrics.registry).decode()
    assert 'mugpos_worker_dependency_down_seconds{dependency="mongodb",worker="w0"} 12.5' in text
