"""What every `mugpos` command shares: the console and settings that exit cleanly when bad."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from core.config import ConfigError, Settings, load_settings

console = Console()


def load_or_exit() -> Settings:
    """Settings, or a readable message and exit code 2 when the configuration is bad."""
    try:
        return load_settings()
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def mugpos_argv(*args: str) -> list[str]:
    """The command line of a `mugpos` child process, run by this interpreter."""
    return [sys.executable, "-m", "control.cli", *args]


def worker_argv(datadir: Path, loglevel: str = "WARNING", stage: str = "all") -> list[str]:
    """How a parent (the demo, a benchmark, a test) starts one pipeline worker."""
    return mugpos_argv(
        "worker", "--datadir", str(datadir), "--loglevel", loglevel, "--stage", stage
    )
