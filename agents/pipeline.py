"""The pipeline as Faust agents: by default one agent runs every stage in process (images ->
intake -> model -> analysis, micro-batched and overlapping); a split deployment runs preprocess,
inference and analysis as agents of their own over the stage topics.

Each agent is a short loop: admit what it takes into its stage's `Delivery` ledger, hand it to
`agents.stages`, and let the ledger acknowledge it once the outcome is durable (published output,
or dead letter plus result). An input is committed only then (at-least-once; the sink is
idempotent). A dependency outage rewinds the inputs instead of failing them; a stage never lets
an exception reach Faust, which would acknowledge the input (streams.delivery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

import faust
import stamina
from aiohttp import web

from agents import stages
from agents.control import WorkerControl
from agents.probes import probe_app, serve
from core import worker_metrics
from infra import tracing
from infra.failures import unavailable_dependency
from infra.logging_setup import bind_context, bind_process
from infra.system_stats import gpu_readings
from schemas.control import MAX_BATCH_CEILING
from schemas.topics import TopicNames
from streams.app import topics
from streams.context import PipelineContext
from streams.delivery import Delivery, Ticket
from streams.revocation import before_revocation

STAGES = ("preprocess", "inference", "analysis")
FUSED = "pipeline"  # every stage in one agent, in process (`--stage all`, the default)
# Inputs a fused worker takes at once, run as overlapping micro-batches of the live max_batch:
# enough for the decode of one to hide the model run of another, few enough to settle well within
# SETTLE_S on a CPU (64 images at 640 px: about 3.5 s on the 2-core dev VM).
FUSED_TAKE = MAX_BATCH_CEILING
PAUSE_POLL_S = 0.05
# Longest the images topic's agent lets uploads in hand go first before its next take: uploads
# come first, yet a flood of them cannot stop the cameras.
UPLOADS_FIRST_S = 5.0
# How long a rebalance or a shutdown waits for the inputs in hand to finish, so this worker
# commits them rather than the next owner redoing them: room for two batches on a busy CPU, under
# the rebalance timeout (streams.app) and Kubernetes' default 30 s grace period.
SETTLE_S = 20.0


def consumer_group(prefix: str, enabled: Iterable[str]) -> str:
    """The consumer group of a worker running `enabled`: the fused workers' group, or its
    split role's (schemas.topics.TopicNames.role_group)."""
    names, enabled = TopicNames(prefix), set(enabled)
    if FUSED in enabled:
        return names.pipeline_group
    return names.role_group(tuple(s for s in STAGES if s in enabled))


def register(
    app: faust.App, ctx: PipelineContext, enabled: Iterable[str], concurrency: int = 1
) -> Callable[[], Awaitable[None]]:
    """Attach the agents of the enabled stages (`FUSED` alone: one in-process agent for all),
    and start/stop the context with the app. Returns the drain to run on SIGTERM before Faust
    stops (streams.worker.PipelineWorker)."""
    enabled = set(enabled)
    unknown = enabled - {*STAGES, FUSED}
    if unknown or (FUSED in enabled and len(enabled) > 1):
        raise ValueError(
            f"unknown stage(s) {sorted(enabled)}; use {FUSED} alone or of {', '.join(STAGES)}"
        )
    ready = asyncio.Event()
    channels = topics(app, ctx.settings)
    settings = ctx.settings
    runs_model = FUSED in enabled or "inference" in enabled

    control = WorkerControl(app, ctx, sorted(STAGES if FUSED in enabled else enabled))
    bind_process(worker_id=control.worker_id)  # on every line this worker logs
    producer = app.producer
    deliveries: list[Delivery] = []

    def delivery(stage: str, channel: str) -> Delivery:
        async def on_poison(ticket: Ticket, exc: BaseException, failures: int) -> None:
            if stage in ("preprocess", FUSED):
                await stages.intake_poison(ctx, producer, stage, ticket.message, failures)
            else:
                await stages.stage_poison(ctx, producer, stage, ticket.message, failures)

        made = Delivery(
            app, stage, channels[channel].get_topic_name(), ctx.health, ctx.failures, on_poison
        )
        deliveries.append(made)
        return made

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
            # A dependency that is down at start is waited for (with backoff, logged by
            # stamina); anything else, such as a missing model, stops the worker.
            async for attempt in stamina.retry_context(
                on=lambda exc: unavailable_dependency(exc) is not None,
                attempts=None,
                timeout=None,
                wait_initial=0.5,
                wait_max=10,
            ):
                with attempt:
                    await ctx.start(with_model=runs_model)
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

    async def settle_revoked(revoked: set) -> None:
        """Finish (bounded) what is in hand on the revoked partitions and commit it."""
        for d in deliveries:
            d.close(revoked)
        await asyncio.gather(*(d.settle(revoked, SETTLE_S) for d in deliveries))
        await _commit(app)

    before_revocation(app, settle_revoked)

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **_: object) -> None:
        """What is still in hand there (it missed the settle) is redone by the next owner."""
        for d in deliveries:
            d.forget(revoked)

    async def drain() -> None:
        """Stop taking input, finish (bounded) what is in hand and commit it: run before Faust
        stops anything (streams.worker), and again, quickly, when it has stopped the consumer."""
        ctx.live.stopping = True
        await asyncio.gather(*(d.settle(None, SETTLE_S) for d in deliveries))
        await _commit(app)

    worker_metrics.install(
        worker_metrics.WorkerCollector(
            state=control.reported_state,
            in_flight=lambda: _in_flight(deliveries),
            queues=lambda: _queue_depths(ctx),
            lag=lambda: _assigned_lag(app),
            unavailable=ctx.health.unavailable,
            gpus=lambda: gpu_readings(ctx.models.device if ctx.models else None),
        )
    )
    endpoint: list[web.AppRunner] = []
    if settings.worker_http_port is not None:

        @app.task
        async def serve_probes() -> None:
            host, port = settings.worker_http_host, settings.worker_http_port
            try:
                probes = probe_app(control.reported_state, ctx.health.unavailable)
                endpoint.append(await serve(probes, host, port))
            except OSError as exc:  # the port is taken: say which, and stop
                logging.getLogger(__name__).error(
                    "worker HTTP endpoint cannot listen on %s:%s: %s", host, port, exc
                )
                await app.crash(exc)

    @app.on_before_shutdown.connect
    async def close_commands(app: faust.App, **_: object) -> None:
        await drain()
        tracing.flush(2.0)  # what the drain finished is exported before the process goes
        await control.stop_commands()
        for runner in endpoint:  # answered `draining`/`stopping` (503) until now
            await runner.cleanup()

    async def batches(
        stream: faust.StreamT, delivery: Delivery, size: int
    ) -> AsyncIterator[list[Ticket]]:
        """The stream's events in batches, admitted to the ledger; nothing new once stopping."""
        async for events in stream.take_events(size, within=settings.max_wait_ms / 1000):
            tickets = [t for t in map(delivery.admit, events) if t is not None]
            if ctx.live.stopping:
                delivery.put_back(tickets)
            elif tickets:
                await admitted()
                control.saw_input()
                yield tickets

    async def after_uploads(uploads: Delivery) -> None:
        """Let the uploads in hand (a client may be waiting for each) go first, bounded."""
        deadline = time.monotonic() + UPLOADS_FIRST_S
        while uploads.in_flight and time.monotonic() < deadline and not app.rebalancing:  # noqa: ASYNC110
            await asyncio.sleep(PAUSE_POLL_S)

    def chunks(delivery: Delivery, tickets: list[Ticket]) -> Iterator[list[Ticket]]:
        """Micro-batches of the live `max_batch` (an operator's `set` applies to the next one);
        once the worker is stopping, the rest are left unprocessed for the next owner."""
        size = ctx.live.max_batch
        for start in range(0, len(tickets), size):
            if ctx.live.stopping:
                delivery.put_back(tickets[start:])
                return
            yield tickets[start : start + size]

    # The uploads topic has agents of its own (queues of their own in Faust), which the images
    # topic's agents let go first: an upload never waits behind a camera's backlog.
    if FUSED in enabled:
        fused = delivery(FUSED, "images")
        fused_uploads = delivery(FUSED, "uploads")

        async def run_fused(tickets: list[Ticket]) -> None:
            size = ctx.live.max_batch  # an operator's `set max_batch` applies to the next take
            messages = [t.message for t in tickets]
            chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
            await stages.run_fused(ctx, producer, chunks, control.batches.record)

        @app.agent(channels["images"], name=FUSED)
        async def pipeline(stream: faust.StreamT) -> None:
            await ready.wait()
            bind_context(stage=FUSED)
            # One ledger call per take: its micro-batches overlap inside it (stages.run_fused),
            # and an outage rewinds them together.
            async for tickets in batches(stream, fused, FUSED_TAKE):
                await after_uploads(fused_uploads)
                await fused.process(tickets, run_fused)

        @app.agent(channels["uploads"], name=f"{FUSED}-uploads")
        async def pipeline_uploads(stream: faust.StreamT) -> None:
            await ready.wait()
            bind_context(stage=FUSED)
            async for tickets in batches(stream, fused_uploads, FUSED_TAKE):
                await fused_uploads.process(tickets, run_fused)

    if "preprocess" in enabled:
        pre = delivery("preprocess", "images")
        pre_uploads = delivery("preprocess", "uploads")

        async def preprocess_one(tickets: list[Ticket]) -> None:
            (ticket,) = tickets
            await stages.preprocess(ctx, producer, ticket.message)

        @app.agent(channels["images"], name="preprocess", concurrency=concurrency)
        async def preprocess(stream: faust.StreamT) -> None:
            await ready.wait()
            bind_context(stage="preprocess")
            async for tickets in batches(stream, pre, 1):
                await after_uploads(pre_uploads)
                await pre.process(tickets, preprocess_one)

        @app.agent(channels["uploads"], name="preprocess-uploads", concurrency=concurrency)
        async def preprocess_uploads(stream: faust.StreamT) -> None:
            await ready.wait()
            bind_context(stage="preprocess")
            async for tickets in batches(stream, pre_uploads, 1):
                await pre_uploads.process(tickets, preprocess_one)

    if "inference" in enabled:
        inf = delivery("inference", "prepared")

        async def infer(tickets: list[Ticket]) -> None:
            started = time.perf_counter()
            await stages.infer(ctx, producer, [t.message for t in tickets])
            control.batches.record(len(tickets), (time.perf_counter() - started) * 1000)

        @app.agent(channels["prepared"], name="inference")
        async def inference(stream: faust.StreamT) -> None:
            await ready.wait()
            bind_context(stage="inference")
            # Buffer up to the ceiling, run in chunks of the live max_batch: an operator's
            # `set max_batch` applies to the next batch (Faust fixes take()'s size at start).
            ceiling = max(MAX_BATCH_CEILING, settings.max_batch)
            async for tickets in batches(stream, inf, ceiling):
                for chunk in chunks(inf, tickets):
                    await inf.process(chunk, infer)

    if "analysis" in enabled:
        ana = delivery("analysis", "detected")

        async def analyse(tickets: list[Ticket]) -> None:
            await stages.analyse(ctx, producer, [t.message for t in tickets])

        @app.agent(channels["detected"], name="analysis", concurrency=concurrency)
        async def analysis(stream: faust.StreamT) -> None:
            await ready.wait()
            bind_context(stage="analysis")
            # Small batches share one round of MongoDB, object-store and Kafka writes.
            async for tickets in batches(stream, ana, settings.max_batch):
                await ana.process(tickets, analyse)

    return drain


def _in_flight(deliveries: Iterable[Delivery]) -> dict[str, int]:
    """Inputs in hand per stage (a stage's images and uploads ledgers together)."""
    counts: dict[str, int] = {}
    for d in deliveries:
        counts[d.stage] = counts.get(d.stage, 0) + d.in_flight
    return counts


def _queue_depths(ctx: PipelineContext) -> dict[str, int]:
    """Work submitted to the worker's thread pools and not started yet (for /metrics)."""
    pools = {"decode": ctx.decode_executor, "inference": ctx.inference_executor}
    return {name: pool._work_queue.qsize() for name, pool in pools.items()}


def _assigned_lag(app: faust.App) -> list[worker_metrics.LagReading]:
    """Log end minus this worker's committed offset on each assigned partition it has fetched
    (for /metrics; the API exports every partition's, workers or not)."""
    consumer = app.consumer
    readings = []
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        committed = consumer._committed_offset.get(tp)
        if end is not None and committed is not None:
            lag = max(0, end - committed)
            readings.append(worker_metrics.LagReading(tp.topic, tp.partition, app.conf.id, lag))
    return readings


async def _commit(app: faust.App) -> None:
    """Commit what the ledgers acknowledged; a broker that is away makes this a no-op."""
    try:
        await app.consumer.maybe_wait_for_commit_to_finish()  # one that began before our acks
        await app.consumer.force_commit()
    except Exception as exc:  # the next owner redoes the uncommitted inputs: duplicates only
        logging.getLogger(__name__).warning("commit failed: %s", exc)
