"""`mugpos worker`: run pipeline stages as one Faust worker of the consumer group."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from control.console import console, load_or_exit


def worker(
    stage: Annotated[
        str,
        typer.Option(
            help="all (every stage in one agent, images to results in memory: the default), or "
            "a comma-separated list of preprocess, inference, analysis, each its own agent over "
            "the stage topics (a split deployment, e.g. many CPU preprocess workers feeding a GPU)."
        ),
    ] = "all",
    concurrency: Annotated[int, typer.Option(min=1, help="Parallel actors per I/O stage.")] = 1,
    datadir: Annotated[
        Path | None, typer.Option(help="Faust state folder (one per worker).")
    ] = None,
    loglevel: Annotated[str | None, typer.Option(help="Default: MUGPOS_LOG_LEVEL.")] = None,
) -> None:
    """Consume the images topic and produce results; scale out by starting more workers."""
    from agents.pipeline import FUSED, STAGES, consumer_group, register
    from infra import tracing
    from infra.kafka_security import verify_kafka_access
    from infra.launchers import free_port
    from streams.app import create_app
    from streams.context import PipelineContext
    from streams.worker import PipelineWorker

    settings = load_or_exit()
    # A refused password or certificate ends the worker here, named (KafkaAccessError: exit 1),
    # instead of Faust retrying forever.
    asyncio.run(verify_kafka_access(settings))
    enabled = (FUSED,) if stage == "all" else tuple(s.strip() for s in stage.split(","))
    if stage != "all" and not set(enabled) <= set(STAGES):
        console.print(
            f"[red]error:[/] unknown stage {stage!r}; use all or a list of {', '.join(STAGES)}"
        )
        raise typer.Exit(2)
    folder = datadir or Path(tempfile.mkdtemp(prefix="mugpos-worker-"))
    group = consumer_group(settings.topic_prefix, enabled)
    # Before any client is made: the MongoDB driver's instrumentation sees only later clients.
    tracing.setup(settings, tracing.SERVICE_WORKER, attributes={"mugpos.worker.role": group})
    # A port of its own, so several workers on one host never clash on Faust's default 6066.
    app = create_app(settings, datadir=folder, web_port=free_port(), group=group)
    drain = register(app, PipelineContext.open(settings), enabled, concurrency)
    # Faust sets up the root logger itself, at this level; the drivers keep theirs (cli.main).
    PipelineWorker(
        app,
        loglevel=loglevel or settings.log_level,
        quiet=True,
        before_stop=drain,
        log_format=settings.log_format,
    ).execute_from_commandline()
