"""`mugpos ingest URL --source-id ID`: camera ingestion from the command line.

Reads a video file, a live stream (RTSP, HTTP/MJPEG, a camera device) or a watched folder,
samples it, and publishes the frames to the images topic like any other producer (README
"Cameras and sources"). Status and the final summary go to stderr: a line redrawn in place on a
terminal, a line every --status-every otherwise (logs, systemd, a test harness).

SIGINT, SIGTERM or SIGHUP stop it cleanly: reading stops, frames already sampled are sent and
their acknowledgements awaited (up to 30 s), the summary is printed. A second signal leaves at
once. Exit codes: 0 done (a video file read to its end, or stopped) with every frame sent
acknowledged; 1 some frame was not acknowledged, or Kafka, the images topic or the video file
could not be used; 2 a bad command line or configuration; 130 stopped by a second signal."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from control.console import load_or_exit
from core.ingest.interval import parse_interval
from core.ingest.source import SourceKind, SourceSpec, classify_source
from core.ingest.stats import IngestStats
from core.ingest.wire import check_source_id

if TYPE_CHECKING:
    from core.config import Settings
    from infra.capture.runner import IngestOptions

errors = Console(stderr=True)
_REDRAW_S = 0.5


class RtspTransport(StrEnum):
    tcp = "tcp"
    udp = "udp"


def _duration(value: str | float) -> float:
    """A duration option: `5s`, `500ms`, `1m` (click also passes the float default through)."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_interval(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _source_id(value: str) -> str:
    try:
        return check_source_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _source(url: str) -> SourceSpec:
    try:
        spec = classify_source(url, is_dir=Path(url).is_dir())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="URL") from None
    if spec.kind is SourceKind.FOLDER and not Path(spec.location).is_dir():
        raise typer.BadParameter(f"no folder {spec.location}", param_hint="URL")
    if spec.kind is SourceKind.VIDEO and not Path(spec.location).is_file():
        raise typer.BadParameter(f"no file {spec.location}", param_hint="URL")
    return spec


async def _report(stats: IngestStats, every_s: float, tty: bool) -> None:
    """The status line: redrawn in place on a terminal, else one line per `every_s`."""
    while True:
        await asyncio.sleep(_REDRAW_S if tty else every_s)
        line = stats.status_line(time.monotonic())
        if tty:  # one row, or each redraw would leave the wrapped part behind
            width = shutil.get_terminal_size().columns - 1
            sys.stderr.write(f"\r\x1b[K{line[:width]}")
        else:
            sys.stderr.write(f"ingest: {line}\n")
        sys.stderr.flush()


async def _main(
    settings: Settings,
    spec: SourceSpec,
    options: IngestOptions,
    stats: IngestStats,
    status_every_s: float,
) -> str:
    from infra.capture.runner import ingest

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()  # a second Ctrl-C: do not wait for the broker's acks
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal)
    tty = sys.stderr.isatty()
    reporter = asyncio.create_task(_report(stats, status_every_s, tty), name="ingest-status")
    try:
        return await ingest(settings, spec, options, stats, stop)
    finally:
        reporter.cancel()
        if tty:
            sys.stderr.write("\r\x1b[K")


def ingest(
    url: Annotated[
        str,
        typer.Argument(
            help="A video file; rtsp://…, http(s)://… (MJPEG); a camera (/dev/video0 or an "
            "index); or a folder to watch (dir:PATH, or a path ending in /).",
            show_default=False,
        ),
    ],
    source_id: Annotated[
        str,
        typer.Option(
            "--source-id",
            help="The source (camera) the frames belong to: their Kafka key and source-id header.",
            parser=_source_id,
            show_default=False,
        ),
    ],
    every: Annotated[
        float,
        typer.Option(
            help="Sampling interval: one frame per interval (500ms, 5s, 1m), of video time for "
            "a file, of wall-clock time for a live source. Folders: every file is sent.",
            parser=_duration,
            metavar="DURATION",
            show_default="1s",
        ),
    ] = 1.0,
    on_change: Annotated[
        bool,
        typer.Option(
            "--on-change",
            help="Skip frames that show nothing new since the last frame sent (a 32x32 grid of "
            "colour blocks, exposure changes fitted out).",
        ),
    ] = False,
    change_threshold: Annotated[
        int,
        typer.Option(
            min=0,
            max=1023,
            help="With --on-change: a frame with at most this many of the 1024 blocks changed "
            "(by more than 16 of 255 levels) counts as unchanged.",
        ),
    ] = 2,
    max_in_flight: Annotated[
        int,
        typer.Option(
            min=1,
            help="Sends not yet acknowledged by the broker, at most. When full, a live source "
            "keeps only its newest sampled frame (older ones count as dropped); files wait.",
        ),
    ] = 16,
    rtsp_transport: Annotated[
        RtspTransport, typer.Option(help="RTSP over TCP (default) or UDP.")
    ] = RtspTransport.tcp,
    timeout: Annotated[
        float,
        typer.Option(
            help="Live sources: give up opening, or waiting for the next frame, after this "
            "long, then reconnect (with backoff).",
            parser=_duration,
            metavar="DURATION",
            show_default="10s",
        ),
    ] = 10.0,
    poll: Annotated[
        float,
        typer.Option(
            help="Folders: how often to look for new files.",
            parser=_duration,
            metavar="DURATION",
            show_default="500ms",
        ),
    ] = 0.5,
    status_every: Annotated[
        float,
        typer.Option(
            help="When stderr is not a terminal: a status line this often.",
            parser=_duration,
            metavar="DURATION",
            show_default="10s",
        ),
    ] = 10.0,
) -> None:
    """Sample a camera, stream, video file or folder into the pipeline (the images topic)."""
    from aiokafka.errors import KafkaError

    from infra.capture.live import capture_threads_alive
    from infra.capture.runner import IngestError, IngestOptions

    spec = _source(url)
    settings = load_or_exit()
    options = IngestOptions(
        every_s=every,
        on_change=on_change,
        change_threshold=change_threshold,
        max_in_flight=max_in_flight,
        rtsp_transport=rtsp_transport.value,
        timeout_s=timeout,
        poll_s=poll,
    )
    stats = IngestStats(source_id, started_at=time.monotonic())
    try:
        ended = asyncio.run(_main(settings, spec, options, stats, status_every))
    except asyncio.CancelledError:  # a second signal: the broker's acks were not awaited
        errors.print(stats.summary(time.monotonic(), "interrupted"), highlight=False)
        code = 130
    except (IngestError, KafkaError) as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        code = 1
    else:
        errors.print(stats.summary(time.monotonic(), ended), highlight=False, soft_wrap=True)
        code = 1 if stats.failed else 0
    if capture_threads_alive():
        # A capture thread stuck in a driver call past its timeouts would abort the interpreter's
        # shutdown (infra.capture.live.LiveStream.join): everything is flushed, leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise typer.Exit(code)
