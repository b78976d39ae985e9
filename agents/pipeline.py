"""The pipeline as Faust agents: images -> preprocess -> inference (micro-batched) -> analysis.

Each agent is a short loop that hands its message to `agents.stages`; a stage produces its output
and waits for the broker to accept it before the loop moves on, so an input's offset is committed
only after its downstream effect is durable (at-least-once; the sink is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import faust

from agents import stages
from streams.app import topics
from streams.context import PipelineContext

STAGES = ("preprocess", "inference", "analysis")


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

    @app.task
    async def open_context() -> None:
        try:
            await ctx.start(with_model="inference" in enabled)
        except Exception as exc:
            # Without its model, database or rules a worker can only fail: stop it loudly
            # instead of leaving agents waiting forever.
            logging.getLogger(__name__).exception("worker cannot start its pipeline context")
            await app.crash(exc)
            return
        ready.set()

    if "preprocess" in enabled:

        @app.agent(channels["images"], name="preprocess", concurrency=concurrency)
        async def preprocess(stream: faust.StreamT) -> None:
            await ready.wait()
            async for event in stream.events():
                await stages.preprocess(ctx, app.producer, event.message)

    if "inference" in enabled:

        @app.agent(channels["prepared"], name="inference")
        async def inference(stream: faust.StreamT) -> None:
            await ready.wait()
            async for batch in stream.take(settings.max_batch, within=settings.max_wait_ms / 1000):
                await stages.infer(ctx, app.producer, batch)

    if "analysis" in enabled:

        @app.agent(channels["detected"], name="analysis", concurrency=concurrency)
        async def analysis(stream: faust.StreamT) -> None:
            await ready.wait()
            async for value in stream:
                await stages.analyse(ctx, app.producer, value)
