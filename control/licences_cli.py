"""`mugpos licences`: the licence of every runtime dependency installed here, checked against the
project's AGPL-3.0-or-later; exit 1 on an unknown or incompatible one that no reviewed exception
accepts. `make test` runs it on the dev environment and each image build on its own installed set."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from control.console import console
from control.licence_audit import AuditError, audit, load_exceptions, unused

SHIPPED_EXCEPTIONS = "licence_exceptions.toml"


def licences(
    exceptions: Annotated[
        Path | None,
        typer.Option(help="Reviewed exceptions (TOML); default: the list shipped with mugpos."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per package.")] = False,
    installed: Annotated[
        bool,
        typer.Option(
            "--installed",
            help="Every installed distribution, not only mugpos's runtime dependencies (an "
            "image's whole set; the dev environment's test tools would be refused).",
        ),
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="List compatible packages too, not only the rest.")
    ] = False,
) -> None:
    """Check the licences of the installed runtime dependencies; exit 1 on any not accepted."""
    source = exceptions or Path(str(resources.files("control") / SHIPPED_EXCEPTIONS))
    try:
        reviewed = load_exceptions(source)
        findings = audit(reviewed, installed=installed)
    except AuditError as exc:
        console.print(f"[red]licence check cannot run:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    refused = [f for f in findings if not f.accepted]
    if as_json:
        for f in findings:
            row = {k: v for k, v in f.__dict__.items() if k not in ("verdict", "exception")}
            reason = f.exception.reason if f.exception else None
            print(
                json.dumps(
                    {**row, "verdict": f.verdict.value, "accepted": f.accepted, "exception": reason}
                )
            )
    else:
        table = Table("package", "version", "licence", "read from", "verdict")
        for f in findings:
            if show_all or f.verdict.value != "compatible":
                verdict = (
                    "[green]compatible[/]" if f.verdict.value == "compatible"
                    else f"[yellow]reviewed[/] ({f.exception.package})" if f.exception
                    else f"[red]{f.verdict.value}[/]"
                )  # fmt: skip
                table.add_row(f.package, f.version, f.licence, f.source, verdict)
        console.print(table)
        for stale in unused(reviewed, findings):
            console.print(f"exception not used here: {stale.package} ({stale.licence})")
        console.print(
            f"{len(findings)} {'installed distributions' if installed else 'runtime dependencies'}: "
            f"{len(findings) - len(refused)} accepted, "
            f"{len(refused)} refused",
            highlight=False,
        )
    if refused:
        raise typer.Exit(1)
