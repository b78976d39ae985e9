"""The worker's side of the control plane: heartbeats to the registry and operator commands.

Heartbeats go to `{prefix}.control.v1` (key `status:{worker_id}`, compacted) and, when Redis is
configured, to `{prefix}:worker:{worker_id}` with a TTL. Commands are read from the same topic by
a follower without a consumer group, so every worker sees every command and acts on its own or
broadcast ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from datetime import UTC, datetime

import faust
from pydantic import ValidationError

from core.models.manager import ModelBudgetError, ModelMismatchError
from core.models.manifest import ModelNotFound
from core.pipeline.live import BatchWindow
from infra.kafka_clients import TopicFollower
from infra.system_stats import gpu_stats, process_stats
from schemas.control import (
    BROADCAST,
    LIVE_SETTINGS,
    MAX_BATCH_CEILING,
    CommandAck,
    ControlCommand,
    WorkerState,
    WorkerStatus,
)
from streams.context import PipelineContext

log = logging.getLogger(__name__)
# Refusals whose message we wrote for the operator (an unknown version, another input size, no
# room in the memory budget); anything else is reported in fixed words, its text only logged.
REASONED = (ModelNotFound, ModelMismatchError, ModelBudgetError)


class WorkerControl:
    def __init__(self, app: faust.App, ctx: PipelineContext, stages: list[str]) -> None:
        self.app = app
        self.ctx = ctx
        self.stages = stages
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.state: WorkerState = "starting"
        self.batches = BatchWindow()
        self.started = time.monotonic()
        self.last_input = time.monotonic()
        self.last_command: CommandAck | None = None
        self._follower: TopicFollower | None = None

    # --- what the agents report -------------------------------------------------------------
    def saw_input(self) -> None:
        self.last_input = time.monotonic()

    # --- heartbeats ---------------------------------------------------------------------------
    def status(self) -> WorkerStatus:
        settings = self.ctx.settings
        models = self.ctx.models
        cpu, rss = process_stats()
        device = models.device if models else None
        uptime = time.monotonic() - self.started
        return WorkerStatus(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            stages=self.stages,
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in self._assignment()),
            state=self.reported_state(),
            unavailable=self.ctx.health.unavailable(),
            model=models.active.ref if models and models.loaded() else None,
            backend=models.backend_name if models else None,
            device=device,
            max_batch=self.ctx.live.max_batch,
            max_wait_ms=settings.max_wait_ms,
            confidence=self.ctx.live.confidence,
            gpu=gpu_stats(device),
            gpu_seconds=round(uptime, 1) if device and device.startswith("cuda") else 0.0,
            cpu_percent=cpu,
            rss_mb=round(rss, 1),
            uptime_s=round(uptime, 1),
            idle_s=round(time.monotonic() - self.last_input, 1),
            heartbeat_interval_s=settings.heartbeat_interval_s,
            heartbeat_at=datetime.now(UTC),
            last_command=self.last_command,
            **self.batches.summary(),
        )

    def reported_state(self) -> WorkerState:
        """`degraded` while a dependency is down and the worker would otherwise be running."""
        if self.state == "running" and self.ctx.health.degraded:
            return "degraded"
        return self.state

    def _assignment(self) -> set:
        try:
            return set(self.app.consumer.assignment())
        except Exception:  # no consumer yet (starting) or already gone (stopping)
            return set()

    async def beat(self) -> None:
        status = self.status()
        payload = status.model_dump_json().encode()
        await self.app.producer.send_and_wait(
            self.ctx.topics.control, f"status:{self.worker_id}".encode(), payload, None, None, None
        )
        if self.ctx.redis is not None:
            ttl = max(10, int(self.ctx.settings.heartbeat_interval_s * 10))
            await self.ctx.redis.set(
                f"{self.ctx.settings.topic_prefix}:worker:{self.worker_id}", payload, ex=ttl
            )

    async def run_heartbeats(self) -> None:
        """Beat every interval; drain and exit when idle too long (if configured)."""
        idle_limit = self.ctx.settings.idle_shutdown_s
        while True:
            if idle_limit and self.state == "running":
                idle = time.monotonic() - self.last_input
                if idle >= idle_limit:
                    log.warning(
                        "idle for %.0f s (MUGPOS_IDLE_SHUTDOWN_S=%d): draining and exiting",
                        idle,
                        idle_limit,
                    )
                    await self._stop("stopping")
            try:
                await self.beat()
            except Exception as exc:  # a missed beat shows as `lost`; never kill the worker
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self.ctx.settings.heartbeat_interval_s)

    # --- commands -----------------------------------------------------------------------------
    async def start_commands(self) -> None:
        self._follower = TopicFollower(self.ctx.settings, self.ctx.topics.control, self.on_message)
        await self._follower.start()

    async def stop_commands(self) -> None:
        if self._follower is not None:
            await self._follower.stop()

    async def on_message(self, key: bytes, value: bytes) -> None:
        if not key.startswith(b"command:"):
            return
        try:
            command = ControlCommand.model_validate_json(value)
        except ValidationError as exc:
            log.warning("ignoring a malformed command %r: %s", key, exc)
            return
        if command.target not in (BROADCAST, self.worker_id):
            return
        try:
            reason = await self.apply(command)
        except REASONED as exc:  # refused for a reason the operator can act on
            reason = str(exc)
        except Exception:  # a failing command is reported, the worker carries on
            log.exception("command %s failed", command.command_id)
            reason = f"the worker could not apply {command.action}; the reason is in its log"
        self.last_command = CommandAck(
            command_id=command.command_id,
            action=command.action,
            ok=reason is None,
            reason=reason,
            applied_at=datetime.now(UTC),
        )
        log.info(
            "command %s %s by %s: %s",
            command.command_id,
            command.action,
            command.issued_by,
            reason or "applied",
        )
        await self.beat()  # acknowledge now, not at the next heartbeat
        if command.action == "drain" and reason is None:
            await self._stop("draining")

    async def apply(self, command: ControlCommand) -> str | None:
        """None when applied, else why not."""
        if command.action == "pause":
            self.ctx.live.running.clear()
            self.state = "paused"
        elif command.action == "resume":
            self.ctx.live.running.set()
            self.state = "running"
        elif command.action == "drain":
            return None
        elif command.action == "set":
            return self._set(command.params)
        elif command.action == "switch_model":
            if self.ctx.models is None:
                return "this worker runs no inference stage"
            ref = str(command.params.get("model", ""))
            await self.ctx.models.activate(ref, input_size=self.ctx.input_size)
        elif command.action == "reload_rules":
            await self.ctx.rules.reload()
        return None

    def _set(self, params: dict[str, float | int | str]) -> str | None:
        unknown = set(params) - LIVE_SETTINGS
        if unknown:
            return f"cannot change {sorted(unknown)} live; live settings: {sorted(LIVE_SETTINGS)}"
        if "max_batch" in params:
            value = params["max_batch"]
            if not isinstance(value, int) or not 1 <= value <= MAX_BATCH_CEILING:
                return f"max_batch must be an integer from 1 to {MAX_BATCH_CEILING}"
            self.ctx.live.max_batch = value
        if "confidence" in params:
            value = params["confidence"]
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                return "confidence must be a number from 0 to 1"
            self.ctx.live.confidence = float(value)
        return None

    async def _stop(self, state: WorkerState) -> None:
        """Graceful exit through Faust's SIGTERM path: in-flight work finishes and commits."""
        self.state = state
        self.ctx.live.running.set()  # a paused worker drains too
        await self.beat()
        os.kill(os.getpid(), signal.SIGTERM)
