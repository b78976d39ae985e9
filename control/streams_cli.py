"""`mugpos streams`: camera streams the streams service reads (put, list, get, delete, through
the API's SDK), and `run`, the service itself (agents.streams)."""

from __future__ import annotations

import asyncio
import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from control.console import console, load_or_exit
from control.ingest_cli import _duration
from mugpos.client import Client

streams_app = typer.Typer(
    help="Camera streams read by the streams service, and the service itself.",
    no_args_is_help=True,
)
SourceId = Annotated[str, typer.Argument(help="The source (camera) the frames belong to.")]


class RtspTransport(StrEnum):
    tcp = "tcp"
    udp = "udp"


def _print_json(data: Any) -> None:
    console.file.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@streams_app.command("list")
def list_streams(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every managed stream with its health (passwords in URLs shown as ***)."""
    with Client.from_login() as client:
        streams = client.streams()
    if as_json:
        _print_json(streams)
        return
    table = Table("source", "url", "every", "state", "fps", "sent", "reconnects", "last frame")
    for s in streams:
        health = s.get("health") or {}
        table.add_row(
            s["source_id"],
            escape(s["url"]),
            f"{s['every_s']:g} s" + (" on change" if s["on_change"] else ""),
            health.get("state", "-"),
            f"{health['fps']:.1f}" if health else "-",
            str(health.get("sent", "-")),
            str(health.get("reconnects", "-")),
            health.get("last_frame_at") or "-",
        )
    console.print(table)


@streams_app.command("get")
def get_stream(source_id: SourceId) -> None:
    """One stream and its health, as JSON."""
    with Client.from_login() as client:
        _print_json(client.stream(source_id))


@streams_app.command("put")
def put_stream(
    source_id: SourceId,
    url: Annotated[str, typer.Argument(help="rtsp://, rtsps://, http:// or https:// (MJPEG).")],
    every: Annotated[
        float,
        typer.Option(
            help="Sampling interval (500ms, 5s, 1m).",
            parser=_duration,
            metavar="DURATION",
            show_default="1s",
        ),
    ] = 1.0,
    on_change: Annotated[
        bool, typer.Option("--on-change", help="Skip frames that show nothing new.")
    ] = False,
    change_threshold: Annotated[
        int, typer.Option(min=0, max=1023, help="With --on-change: blocks that may change.")
    ] = 2,
    rtsp_transport: Annotated[
        RtspTransport, typer.Option(help="RTSP over TCP (default) or UDP.")
    ] = RtspTransport.tcp,
) -> None:
    """Create a stream or replace its settings; the service (re)starts it within 2 s."""
    with Client.from_login() as client:
        stored = client.put_stream(
            source_id,
            url,
            every_s=every,
            on_change=on_change,
            change_threshold=change_threshold,
            rtsp_transport=rtsp_transport.value,
        )
    console.print(f"{source_id}: reading {escape(stored['url'])}", highlight=False)


@streams_app.command("delete")
def delete_stream(source_id: SourceId) -> None:
    """Stop reading the stream (the service stops it within 2 s)."""
    with Client.from_login() as client:
        client.delete_stream(source_id)
    console.print(f"{source_id}: stream deleted", highlight=False)


@streams_app.command("run")
def run() -> None:
    """The streams service: read every managed stream into the images topic. Run one only."""
    from agents.streams import serve
    from infra.capture.live import capture_threads_alive

    asyncio.run(serve(load_or_exit()))
    if capture_threads_alive():
        # A capture thread stuck in a driver call would abort the interpreter's shutdown
        # (infra.capture.live.LiveStream.join): everything is flushed, leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
