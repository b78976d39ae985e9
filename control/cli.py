"""The `mugpos` command line: configuration, health, provisioning and the embedded demo."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from control.api_cli import api, users_app
from control.backup_cli import backup, restore
from control.client_cli import login, logout, results_app, submit
from control.console import console, load_or_exit
from control.dlq_cli import dlq_app
from control.ingest_cli import ingest
from control.licences_cli import licences
from control.models_cli import models_app, synth, train
from control.rules_cli import rules_app
from control.servers_cli import servers_app
from control.sources_cli import sources_app
from control.streams_cli import streams_app
from control.users_cli import delete_user, disable_user, enable_user, list_keys, revoke_key
from control.webhooks_cli import webhooks_app
from control.worker_cli import worker
from core.config import ENV_PREFIX, ConfigError, Settings, load_settings

app = typer.Typer(
    help="H200 Intelligent Mug Positioning System",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(synth)
app.command()(train)
app.add_typer(models_app, name="models")
app.add_typer(rules_app, name="rules")
app.add_typer(sources_app, name="sources")
app.add_typer(streams_app, name="streams")
app.add_typer(webhooks_app, name="webhooks")
app.command()(worker)
app.command()(api)
app.add_typer(users_app, name="users")
users_app.command("disable")(disable_user)
users_app.command("enable")(enable_user)
users_app.command("delete")(delete_user)
users_app.command("keys")(list_keys)
users_app.command("revoke-key")(revoke_key)
app.add_typer(servers_app, name="servers")
app.add_typer(dlq_app, name="dlq")
app.command()(licences)
app.command()(login)
app.command()(logout)
app.command()(submit)
app.add_typer(results_app, name="results")
app.command()(backup)
app.command()(restore)
app.command()(ingest)


def _print_version(value: bool) -> None:
    if value:
        from importlib import metadata

        console.print(f"mugpos {metadata.version('mugpos')}", highlight=False)
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="MUGPOS_LOG_LEVEL=DEBUG for this command and the processes it starts; the "
            "drivers stay at MUGPOS_DRIVER_LOG_LEVEL.",
        ),
    ] = False,
) -> None:
    """Logging for every command, configured in one place (infra.logging_setup)."""
    from infra.logging_setup import configure_logging

    if verbose:  # in the environment: API worker processes and the demo's children inherit it
        os.environ[f"{ENV_PREFIX}LOG_LEVEL"] = "DEBUG"
    try:
        settings = load_settings()
    except ConfigError:  # the command itself reports it; until then, the default levels
        settings = Settings.model_construct()
    configure_logging(settings.log_level, settings.driver_log_level, settings.log_format)


@app.command()
def config() -> None:
    """Show the effective configuration (secrets masked)."""
    table = Table("variable", "value")
    for name, value in load_or_exit().safe_dump().items():
        table.add_row(name, "" if value is None else value)
    console.print(table)


@app.command()
def check(timeout: Annotated[float, typer.Option(help="Seconds per component.")] = 5.0) -> None:
    """Check Kafka, MongoDB, Redis and the object store; exit 1 if any is failing."""
    from infra.health import check_all

    results = asyncio.run(check_all(load_or_exit(), timeout_s=timeout))
    table = Table("component", "status", "detail", "ms")
    for result in results:
        status = "[green]ok[/]" if result.ok else "[red]failing[/]"
        table.add_row(result.name, status, result.detail, f"{result.latency_ms:g}")
    console.print(table)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def setup() -> None:
    """Declare topics, create MongoDB indexes and the bucket, and set the retention of results
    and originals. Safe to repeat."""
    from infra.provision import provision

    for name, outcome in asyncio.run(provision(load_or_exit())).items():
        console.print(f"{name}: {outcome}")


@app.command()
def gc() -> None:
    """Delete originals and result objects past their retention (MUGPOS_ORIGINAL_RETENTION_DAYS,
    MUGPOS_RESULT_RETENTION_DAYS): for a store without lifecycle rules, e.g. daily from cron."""
    from infra.object_store import create_object_store
    from infra.retention import expiry_by_prefix, sweep

    settings = load_or_exit()
    days = expiry_by_prefix(settings)
    if all(d is None for d in days.values()):
        console.print("no retention configured: nothing expires")
        return

    async def run() -> dict[str, int]:
        store = create_object_store(settings)
        try:
            return await sweep(store, days)
        finally:
            await store.close()

    for prefix, count in asyncio.run(run()).items():
        console.print(f"{prefix}: {count} object(s) older than {days[prefix]} day(s) deleted")


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Folder for service data and logs (default: a temp dir).")
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Keep the services, worker and API running until Ctrl-C.")
    ] = False,
) -> None:
    """Run the system on embedded services (tansu, secantusdb, a local object store)."""
    from control.demo import run_demo

    if not run_demo(workdir, console, serve=serve):
        raise typer.Exit(1)


def run() -> None:
    """Console-script entry: known failures print one line and exit 1, never a stack trace."""
    from aiokafka.errors import KafkaError

    from core.models.manifest import ModelIntegrityError, ModelNotFound
    from core.rules import RuleSpecError
    from infra.launchers import ServiceStartError
    from infra.object_store import ObjectStoreError
    from mugpos.client import ApiError

    try:
        app()
    except ApiError as exc:
        hint = "; run `mugpos login`" if exc.status == 401 and exc.code != "bad_credentials" else ""
        console.print(f"[red]error:[/] {escape(str(exc))}{hint}", highlight=False)
        raise SystemExit(1) from None
    except (
        KafkaError,
        ModelIntegrityError,
        ModelNotFound,
        ObjectStoreError,
        RuleSpecError,
        ServiceStartError,
        OSError,
    ) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    run()
