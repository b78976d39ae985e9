"""The pipeline as Faust agents: images -> preprocess -> inference (micro-batched) -> analysis.

Each agent is a short loop that hands its message to `agents.stages`; a stage produces its output
and waits for the broker to accept it before the loop moves on, so an input's offset is committed
only after its downstream effect is durable (at-least-once; the sink is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import faust

from agents import stages
from agents.control import WorkerControl
from schemas.control import MAX_BATCH_CEILING
from streams.app import topics
from streams.context import PipelineContext

STAGES = ("preprocess", "inference", "analysis")
PAUSE_POLL_S = 0.05


def register(
    app: faust.App, ctx: PipelineContext, enabled: Iterable[str], concurrency: int = 1
) -> None:
    """Attach the agents of the enabled stages, and start/stop the context with the app."""
    enabled = set(enabled)
    unknown = enabled - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
    ready = asyncio.Event()
    channels = topics(app, ctx.settings)
    settings = ctx.settings

    control = WorkerControl(app, ctx, sorted(enabled))

    async def admitted() -> None:
        """Hold the message in hand while paused, but not through a rebalance: Faust waits for
        in-flight messages before it revokes partitions, so a held one would stall the group.
        A message passes while a rebalance runs, or once one has started since it was taken."""
        held_since = app.rebalancing_count  # both set from Faust's consumer thread: poll them
        while (  # noqa: ASYNC110
            not ctx.live.running.is_set()
            and not app.rebalancing
            and app.rebalancing_count == held_since
        ):
            await asyncio.sleep(PAUSE_POLL_S)

    @app.task
    async def open_context() -> None:
        try:
            await ctx.start(with_model="inference" in enabled)
            await control.start_commands()
        except Exception as exc:
            # Without its model, database or rules a worker can only fail: stop it loudly
            # instead of leaving agents waiting forever.
            logging.getLogger(__name__).exception("worker cannot start its pipeline context")
            await app.crash(exc)
            return
        control.state = "running"
        ready.set()
        await control.run_heartbeats()

    @app.on_before_shutdown.connect
    async def close_commands(app: faust.App, **_: object) -> None:
        await control.stop_commands()

    if "preprocess" in enabled:

        @app.agent(channels["images"], name="preprocess", concurrency=concurrency)
        async def preprocess(stream: faust.StreamT) -> None:
            await ready.wait()
            async for event in stream.events():
                await admitted()
                control.saw_input()
                await stages.preprocess(ctx, app.producer, event.message)

    if "inference" in enabled:

        @app.agent(channels["prepared"], name="inference")
        async def inference(stream: faust.StreamT) -> None:
            await ready.wait()
            # Buffer up to the ceiling, run in chunks of the live max_batch: an operator's
            # `set max_batch` applies to the next batch (Faust fixes take()'s size at start).
            ceiling = max(MAX_BATCH_CEILING, settings.max_batch)
            async for buffered in stream.take(ceiling, within=settings.max_wait_ms / 1000):
                await admitted()
                control.saw_input()
                for start in range(0, len(buffered), size := ctx.live.max_batch):
                    chunk = buffered[start : start + size]
                    started = time.perf_counter()
                    await stages.infer(ctx, app.producer, chunk)
                    control.batches.record(len(chunk), (time.perf_counter() - started) * 1000)

    if "analysis" in enabled:

        @app.agent(channels["detected"], name="analysis", concurrency=concurrency)
        async def analysis(stream: faust.StreamT) -> None:
            await ready.wait()
            async for value in stream:
                await admitted()
                await stages.analyse(ctx, app.producer, value)
