"""`mugpos dlq list|replay`: see the dead letters and, once their cause is fixed (a missing object
uploaded, a model repaired), send their inputs through the pipeline again under the same request
id. The Kafka, MongoDB and object-store side is `infra.dead_letters`."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from control.console import console, load_or_exit
from core.pipeline.redrive import LetterFilter, parse_since

if TYPE_CHECKING:
    from infra.dead_letters import StoredLetter

T = TypeVar("T")

dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
errors = Console(stderr=True)
PROGRESS_EVERY = 100


def _since(value: str) -> datetime:
    try:
        return parse_since(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


REASON = typer.Option(help="Only letters with this reason code, e.g. bad_image_ref.")
STAGE = typer.Option(help="Only letters from this stage: preprocess, inference or analysis.")
SINCE = typer.Option(
    help="Only letters that failed at or after this ISO-8601 time (UTC when no offset is given) "
    "or this long ago: 30m, 2h, 1d.",
    parser=_since,
    metavar="TIME|DURATION",
)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run one async step; a dependency that fails ends the command with its message, exit 1."""
    from infra.dead_letters import RedriveError

    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # -v shows the clients' own logs
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(work)
    except RedriveError as exc:
        raise _fail(str(exc)) from None


@dlq_app.command("list")
def list_letters(
    reason: Annotated[str | None, REASON] = None,
    stage: Annotated[str | None, STAGE] = None,
    since: Annotated[datetime | None, SINCE] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per letter (summary on stderr).")
    ] = False,
) -> None:
    """Dead letters up to the topic's current end, and whether each can be replayed."""
    from infra.dead_letters import Redrive, read_letters

    settings = load_or_exit()
    wanted = LetterFilter(reason=reason, stage=stage, since=since)

    async def work():
        scan = await read_letters(settings, wanted)
        async with Redrive(settings) as redrive:
            counts = await redrive.replay_counts(scan.letters)
            why_not = await redrive.why_not_replayable_all(scan.letters)
        return scan, counts, why_not

    scan, counts, why_not = _run(work())
    rows = list(zip(scan.letters, why_not, strict=True))
    if as_json:
        for stored, why in rows:
            entry = {
                "position": stored.label,
                "partition": stored.partition,
                "offset": stored.offset,
                **stored.letter.model_dump(mode="json"),
                "replayable": why is None,
                "why_not": why,
                "replays": counts.get(stored.position, 0),
            }
            sys.stdout.write(json.dumps(entry) + "\n")
        sys.stdout.flush()
    else:
        table = Table("position", "request id", "stage", "reason", "failed at", "replayable")
        for stored, why in rows:
            letter = stored.letter
            done = counts.get(stored.position, 0)
            verdict = f"[red]no[/]: {why}" if why else "[green]yes[/]"
            if done:
                verdict += f" (replayed {done}x)"
            table.add_row(
                stored.label,
                letter.request_id,
                letter.stage,
                letter.reason,
                letter.failed_at.isoformat(timespec="seconds"),
                verdict,
            )
        console.print(table)
    _summary(as_json, scan.letters, sum(why is None for why in why_not), scan.unreadable)


def _summary(
    to_stderr: bool, letters: list[StoredLetter], replayable: int, unreadable: int
) -> None:
    out = errors if to_stderr else console
    if not letters:
        out.print("no dead letters match", highlight=False)
    else:
        reasons = Counter(stored.letter.reason for stored in letters)
        by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
        out.print(
            f"{len(letters)} dead letter(s): {by_reason}; {replayable} replayable",
            highlight=False,
        )
    if unreadable:
        out.print(f"{unreadable} record(s) on the topic are not dead letters (skipped)")


@dataclass(slots=True)
class _Tally:
    replayed: int = 0
    already: int = 0
    not_replayable: int = 0
    scanned: bool = False
    started: float = field(default_factory=time.monotonic)

    def line(self, verb: str) -> str:
        return (
            f"{self.replayed} {verb}, {self.already} skipped (already replayed), "
            f"{self.not_replayable} not replayable"
        )


@dlq_app.command()
def replay(
    reason: Annotated[str | None, REASON] = None,
    stage: Annotated[str | None, STAGE] = None,
    since: Annotated[datetime | None, SINCE] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed; send nothing.")
    ] = False,
    again: Annotated[
        bool, typer.Option("--again", help="Also replay letters that were replayed before.")
    ] = False,
    as_user: Annotated[
        str | None, typer.Option("--as", help="Name recorded in the audit log (default: you).")
    ] = None,
) -> None:
    """Send the selected letters' inputs through the pipeline again, under their request ids."""
    # Each goes to the images topic as a claim check to its original bytes, so any size works.
    # Letters whose bytes were not kept (or are gone) are reported, never sent.
    from infra.dead_letters import Redrive, read_letters

    settings = load_or_exit()
    wanted = LetterFilter(reason=reason, stage=stage, since=since)
    user = as_user or _user()
    verb = "would be replayed" if dry_run else "replayed"
    tally = _Tally()

    async def work() -> None:
        scan = await read_letters(settings, wanted)
        total = len(scan.letters)
        tally.scanned = True
        console.print(f"{total} dead letter(s) selected", highlight=False)
        async with Redrive(settings) as redrive:
            if not dry_run:
                await redrive.ensure_ledger()
            counts = await redrive.replay_counts(scan.letters)
            for done, stored in enumerate(scan.letters, 1):
                tag = f"{stored.label} {stored.letter.request_id} ({stored.letter.reason})"
                if counts.get(stored.position, 0) and not again:
                    tally.already += 1
                    console.print(f"skipped {tag}: already replayed", highlight=False)
                elif why := await redrive.why_not_replayable(stored.letter):
                    tally.not_replayable += 1
                    console.print(f"not replayable {tag}: {why}", highlight=False)
                else:
                    if not dry_run:
                        await redrive.replay(stored, user=user, again=again)
                    tally.replayed += 1
                    console.print(f"{verb} {tag}", highlight=False)
                if done % PROGRESS_EVERY == 0 and done < total:
                    elapsed = time.monotonic() - tally.started
                    console.print(
                        f"… {done}/{total} handled in {elapsed:.0f} s: {tally.line(verb)}",
                        highlight=False,
                    )

    try:
        _run(work())
    finally:
        if tally.scanned:  # also after a failure midway: what was done so far
            console.print(tally.line(verb), highlight=False)
