"""Control-plane messages on `{prefix}.control.v1`: operator commands (key `command:{id}`) and
worker heartbeats (key `status:{worker_id}`; the topic is compacted, so the newest status of
every worker stays readable without Redis)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["pause", "resume", "drain", "set", "switch_model", "reload_rules"]
WorkerState = Literal["starting", "running", "degraded", "paused", "draining", "stopping"]
BROADCAST = "*"
LIVE_SETTINGS = {"max_batch", "confidence"}  # what `set` may change without a restart
MAX_BATCH_CEILING = 64


class ControlCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    kind: Literal["command"] = "command"
    command_id: str
    target: str = Field(description=f"A worker id, or {BROADCAST!r} for every worker.")
    action: Action
    params: dict[str, float | int | str] = Field(default_factory=dict)
    issued_by: str
    issued_at: datetime


class CommandAck(BaseModel):
    command_id: str
    action: Action
    ok: bool
    reason: str | None = None
    applied_at: datetime


class GpuStats(BaseModel):
    present: bool
    name: str | None = None
    utilization_percent: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    temperature_c: float | None = None
    detail: str | None = Field(None, description="Why there is no reading, when there is none.")


class WorkerStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    kind: Literal["status"] = "status"
    worker_id: str
    host: str
    pid: int
    stages: list[str]
    partitions: list[str] = Field(description="topic:partition pairs assigned to this worker")
    state: WorkerState
    unavailable: dict[str, float] = Field(
        default_factory=dict,
        description="Dependencies the worker finds down (state `degraded`), with seconds down.",
    )
    model: str | None = None
    backend: str | None = None
    device: str | None = None
    max_batch: int
    max_wait_ms: int
    confidence: float | None = None
    images_last_minute: int = 0
    throughput_per_s: float = 0.0
    batch_latency_ms_p50: float | None = None
    batch_sizes: dict[str, int] = Field(
        default_factory=dict, description="Histogram of the last minute's batch sizes."
    )
    last_batch_size: int | None = None
    gpu: GpuStats
    gpu_seconds: float = 0.0
    cpu_percent: float
    rss_mb: float
    uptime_s: float
    idle_s: float
    heartbeat_interval_s: float
    heartbeat_at: datetime
    last_command: CommandAck | None = None
