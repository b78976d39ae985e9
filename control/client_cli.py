"""`mugpos login|logout|submit|results`: the API from a terminal, through the SDK (mugpos.client).

Data goes to stdout (a table, or JSON lines with --json); progress and notes go to stderr, so
`mugpos submit --wait --json photos/ | jq …` works."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from control.console import console
from mugpos import credentials
from mugpos.client import ApiError, Client, Pending, Result, Submitted

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
notes = Console(stderr=True)
results_app = typer.Typer(help="Look up and follow analysis results.", no_args_is_help=True)


def login(
    url: Annotated[
        str | None, typer.Option(help="The API's address; default: MUGPOS_API_URL, else stored.")
    ] = None,
    username: Annotated[str | None, typer.Option("--username", "-u")] = None,
    password: Annotated[
        str | None,
        typer.Option(envvar="MUGPOS_PASSWORD", help="Prompted for when not given."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Store a machine key instead of logging in as a user.")
    ] = None,
) -> None:
    """Log in (or store an API key) for the commands below; kept 0600 in the config folder."""
    stored = credentials.load()
    address = url or stored.url
    with Client(address, api_key=api_key) as client:
        if api_key:
            client.results(limit=1)  # proves the key: a refused one raises ApiError here
            saved = credentials.Credentials(url=address, api_key=api_key)
            who = "an API key"
        else:
            username = username or typer.prompt("username")
            password = password or typer.prompt("password", hide_input=True)
            token = client.login(username, password)
            expires = datetime.now(UTC) + timedelta(seconds=token.expires_in)
            saved = credentials.Credentials(
                url=address, token=token.access_token, expires_at=expires, username=username
            )
            who = f"{username} ({token.role}) until {expires:%Y-%m-%d %H:%M} UTC"
    path = credentials.save(saved)
    notes.print(f"logged in to {address} as {who}; stored in {path}", highlight=False)


def logout() -> None:
    """Forget the stored token or key."""
    removed = credentials.forget()
    notes.print("logged out" if removed else "not logged in")


def expand_paths(paths: list[str]) -> list[Path]:
    """Files as given, image files under folders (recursively), and glob patterns (for shells
    that pass them through quoted); each file once, in order."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(given):
            found += sorted(Path(p) for p in glob.glob(given, recursive=True) if Path(p).is_file())
        else:
            raise typer.BadParameter(f"{given}: no such file, folder or pattern match")
    return list(dict.fromkeys(found))


def _summary(result: Result | Pending | None) -> dict[str, Any]:
    if result is None:
        return {"status": "timeout"}
    if isinstance(result, Pending):
        return {"status": "pending"}
    mugs = (result.positioning or {}).get("mugs") or []
    failed = [v.name for v in result.verdicts if v.passed is False]
    return {
        "status": result.status,
        "mugs": len(mugs),
        "score": min((m["score"] for m in mugs), default=None),
        "failed_rules": failed,
        "error": result.error.reason if result.error else None,
    }


def _row(file: str, request_id: str | None, summary: dict[str, Any]) -> list[str]:
    status = summary["status"]
    colour = {"ok": "green", "pending": "yellow"}.get(status, "red")
    score = summary.get("score")
    return [
        file,
        request_id or "",
        f"[{colour}]{status}[/]",
        "" if summary.get("mugs") is None else str(summary["mugs"]),
        "" if score is None else f"{score:g}",
        ", ".join(summary.get("failed_rules") or []) or summary.get("error") or "",
    ]


def submit(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    source_id: Annotated[str, typer.Option(help="Where the images come from.")] = "cli",
    wait: Annotated[bool, typer.Option(help="Wait for each result and show it.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for all results.")] = 300,
    confidence: Annotated[
        float | None, typer.Option(min=0, max=1, help="Detection threshold for these images.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one per file.")] = False,
) -> None:
    """Upload images and (with --wait) show their results; exit 1 when any image was refused,
    failed or timed out."""
    files = expand_paths(paths)
    if not files:
        notes.print("[red]error:[/] no images found")
        raise typer.Exit(2)
    outcomes: list[tuple[Path, Submitted | None, dict[str, Any], Result | None]] = []
    with Client.from_login() as client, _progress() as progress:
        task = progress.add_task("uploading", total=len(files))
        for file in files:
            try:
                ack = client.submit(file, source_id=source_id, confidence=confidence)
                outcomes.append((file, ack, {"status": "pending"}, None))  # type: ignore[arg-type]
            except ApiError as exc:
                if exc.status in (0, 401, 403):  # not reachable or not allowed: none will be
                    raise
                outcomes.append((file, None, {"status": "refused", "error": exc.code}, None))
            progress.advance(task)
        if wait:
            deadline = time.monotonic() + timeout
            task = progress.add_task("analysing", total=len(outcomes))
            for index, (file, ack, _pending, _) in enumerate(outcomes):
                if ack is not None:
                    remaining = deadline - time.monotonic()
                    result = client.wait(ack.request_id, remaining) if remaining > 0 else None
                    outcomes[index] = (file, ack, _summary(result), result)
                progress.advance(task)
    _report(outcomes, as_json)
    if any(summary["status"] not in ("ok", "pending") for _, _, summary, _ in outcomes):
        raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=notes,
        transient=True,
    )


def _report(
    outcomes: list[tuple[Path, Submitted | None, dict[str, Any], Result | None]], as_json: bool
) -> None:
    if as_json:
        for file, ack, summary, result in outcomes:
            line = {"file": str(file), "request_id": ack.request_id if ack else None} | summary
            if result is not None:
                line["result"] = result.model_dump(mode="json")
            console.file.write(orjson.dumps(line).decode() + "\n")
        return
    table = Table("file", "request id", "status", "mugs", "score", "failed rules / error")
    for file, ack, summary, _ in outcomes:
        table.add_row(*_row(str(file), ack.request_id if ack else None, summary))
    console.print(table)


@results_app.command("get")
def get_result(
    request_id: str,
    annotated: Annotated[
        Path | None, typer.Option(help="Also save the annotated JPEG (boxes, verdicts) here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole result as JSON.")] = False,
) -> None:
    """One result: its mugs, scores, advice and rule verdicts."""
    with Client.from_login() as client:
        result = client.result(request_id)
        if annotated is not None and isinstance(result, Result):
            annotated.write_bytes(client.image(request_id, annotated=True))
            notes.print(f"annotated image saved to {annotated}", highlight=False)
    if as_json:
        console.file.write(result.model_dump_json() + "\n")
        return
    if isinstance(result, Pending):
        console.print(f"{request_id}: [yellow]pending[/] (submitted {result.submitted_at})")
        return
    _describe(result)


def _describe(result: Result) -> None:
    model = f"{result.model.name}:{result.model.version}" if result.model else "-"
    console.print(
        f"{result.request_id} from {result.source_id}: {result.status}, model {model}, "
        f"{result.latency_ms or 0:.0f} ms",
        highlight=False,
    )
    if result.error:
        console.print(f"[red]{result.error.reason}[/]: {result.error.message}", highlight=False)
    mugs = Table("mug", "score", "on coaster", "edge cm", "failing", "advice")
    for mug in (result.positioning or {}).get("mugs") or []:
        advice = (mug.get("recommendation") or {}).get("text") or ""
        coaster = {True: "yes", False: "no", None: "unknown"}[mug.get("on_coaster")]
        edge = mug.get("edge_distance_cm")
        mugs.add_row(
            str(mug["index"]),
            f"{mug['score']:g}",
            coaster,
            "" if edge is None else f"{edge:g}",
            ", ".join(mug.get("failing") or []),
            advice,
        )
    console.print(mugs)
    if result.verdicts:
        verdicts = Table("rule", "verdict", "message")
        for verdict in result.verdicts:
            mark = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[dim]n/a[/]"}
            verdicts.add_row(verdict.name, mark[verdict.passed], verdict.message)
        console.print(verdicts)


@results_app.command("list")
def list_results(
    source_id: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option(help="pending, ok, rejected or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """The newest results, filtered."""
    with Client.from_login() as client:
        page = client.results(source_id=source_id, status=status, limit=limit)
    if as_json:
        for item in page.items:
            console.file.write(item.model_dump_json() + "\n")
        return
    table = Table("source", "request id", "status", "mugs", "score", "failed rules / error")
    for item in page.items:
        table.add_row(*_row(item.source_id, item.request_id, _summary(item)))
    console.print(table)


def _watching() -> None:
    notes.print("watching for results (Ctrl-C to stop)")


@results_app.command("watch")
def watch(
    source_id: Annotated[str | None, typer.Option(help="Only this source's results.")] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many results.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Results live as the pipeline finishes them, until Ctrl-C (or --count)."""

    async def follow() -> None:
        seen = 0
        with Client.from_login() as client:
            async for result in client.watch(source_id, on_open=_watching):
                if as_json:
                    console.file.write(result.model_dump_json() + "\n")
                    console.file.flush()
                else:
                    summary = _summary(result)
                    row = _row(result.source_id, result.request_id, summary)
                    console.print(" ".join(part for part in row if part))
                seen += 1
                if count is not None and seen >= count:
                    return

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())
