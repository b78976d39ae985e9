"""`mugpos sources`: register cameras and their settings, calibrate them with four points, and
look at what their frames built up (tracked mugs, held verdicts), through the API (SDK)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from control.console import console
from mugpos.client import ApiError, Client

sources_app = typer.Typer(help="Cameras and other image sources.", no_args_is_help=True)
SourceId = Annotated[str, typer.Argument(help="The id images carry in their source-id header.")]


def _print_json(data: Any) -> None:
    console.file.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@sources_app.command("list")
def list_sources(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every registered source."""
    with Client.from_login() as client:
        sources = client.sources()
    if as_json:
        _print_json(sources)
        return
    table = Table("source", "version", "name", "calibration", "zones", "rules", "model")
    for s in sources:
        spec = s["source"]
        rules = (
            spec["rules"] if spec["rules"] == "all" else "tags: " + ", ".join(spec["rules"]["tags"])
        )
        calibration = (spec.get("calibration") or {}).get("kind", "-")
        table.add_row(
            s["source_id"],
            str(s["version"]),
            spec["name"],
            calibration,
            ", ".join(spec["zones"]) or "-",
            rules,
            spec.get("model") or "the worker's",
        )
    console.print(table)


@sources_app.command("get")
def get_source(
    source_id: SourceId, version: Annotated[int | None, typer.Option(min=1)] = None
) -> None:
    """One source's settings as JSON (edit them and `put` them back)."""
    with Client.from_login() as client:
        _print_json(client.source(source_id, version))


@sources_app.command("put")
def put_source(
    source_id: SourceId,
    file: Annotated[Path, typer.Argument(help="The settings as JSON; - reads stdin.")],
) -> None:
    """Create a source or store a new version of its settings."""
    raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    try:
        settings = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"{file} is not JSON: {exc}") from None
    with Client.from_login() as client:
        stored = client.put_source(source_id, settings)
    console.print(f"{source_id}: version {stored['version']} stored", highlight=False)


def _point(text: str) -> list[float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a point: write x,y (pixels)") from None
    return [x, y]


@sources_app.command("calibrate")
def calibrate(
    source_id: SourceId,
    points: Annotated[
        list[str],
        typer.Argument(
            help="Four image points x,y in px, clockwise from far-left: A B C D (e.g. the "
            "corners of a sheet of paper on the table)."
        ),
    ],
    rectangle: Annotated[
        str | None,
        typer.Option(help="WIDTHxDEPTH in cm when the points are a rectangle (A4: 29.7x21)."),
    ] = None,
    distances: Annotated[
        str | None,
        typer.Option(help="ab,bc,cd,da,ac[,bd] in cm: the real distances between the points."),
    ] = None,
    table_top: Annotated[
        bool,
        typer.Option(
            help="The points are the table top's corners (with --rectangle): exact edges."
        ),
    ] = False,
    px_per_cm: Annotated[
        float | None, typer.Option(help="A camera looking straight down: its scale instead.")
    ] = None,
) -> None:
    """Set a source's calibration, keeping its other settings (creates it if needed)."""
    if px_per_cm is not None:
        calibration: dict[str, Any] = {"kind": "scale", "px_per_cm": px_per_cm}
    else:
        if len(points) != 4 or (rectangle is None) == (distances is None):
            raise typer.BadParameter("give four points and one of --rectangle or --distances")
        calibration = {
            "kind": "four_points",
            "image_points": [_point(p) for p in points],
            "table_top": table_top,
        }
        try:
            if rectangle is not None:
                calibration["rectangle_cm"] = [float(v) for v in rectangle.lower().split("x")]
            else:
                names = ("ab", "bc", "cd", "da", "ac", "bd")
                values = [float(v) for v in (distances or "").split(",")]
                calibration["distances_cm"] = dict(zip(names, values, strict=False))
        except ValueError:
            raise typer.BadParameter("sizes are numbers in cm, e.g. 29.7x21") from None
    with Client.from_login() as client:
        try:
            settings = client.source(source_id)["source"]
        except ApiError as exc:
            if exc.code != "unknown_source":
                raise
            settings = {}
        stored = client.put_source(source_id, {**settings, "calibration": calibration})
    console.print(f"{source_id}: calibrated, version {stored['version']}", highlight=False)


@sources_app.command("delete")
def delete_source(source_id: SourceId) -> None:
    """Delete a source (its history is kept); its images are then judged alone."""
    with Client.from_login() as client:
        stored = client.delete_source(source_id)
    console.print(f"{source_id}: deleted (version {stored['version']})", highlight=False)


@sources_app.command("state")
def source_state(
    source_id: SourceId, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """The source's tracked mugs and held verdicts after its newest frame."""
    with Client.from_login() as client:
        state = client.source_state(source_id)
    if as_json:
        _print_json(state)
        return
    console.print(
        f"{source_id}: {state['frames']} frame(s), newest {state['frame_at'] or '-'}",
        highlight=False,
    )
    table = Table("track", "first seen", "last seen", "held rules")
    for track in state["tracks"]:
        held = ", ".join(
            f"{rule}: {'failing' if h['failing'] else 'passing'} {h['for_s']:.0f} s"
            for rule, h in track["held"].items()
        )
        table.add_row(
            track["track_id"],
            track["first_seen"],
            track["last_seen"],
            held or "-",
        )
    console.print(table)
