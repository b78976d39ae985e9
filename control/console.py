"""What every `mugpos` command shares: the console and settings that exit cleanly when bad."""

from __future__ import annotations

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
