"""`mugpos backup` and `mugpos restore`: MongoDB backups in the object store, for the CronJob of
the Helm chart and for an operator bringing a deployment back. The work is `infra.backup`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from control.console import console, load_or_exit

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from core.config import Settings
    from infra.backup import Listing, Manifest
    from infra.object_store import ObjectStore

T = TypeVar("T")
errors = Console(stderr=True)
log = logging.getLogger(__name__)


def backup(
    keep: Annotated[
        int | None,
        typer.Option(
            min=1, help="After a successful backup, delete those older than the newest N."
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the backups (counts, sizes) instead.")
    ] = False,
) -> None:
    """Back up the MongoDB collections that matter to the object store (backups/mongodb/)."""
    from infra import backup as backups

    if list_:
        if keep is not None:
            raise typer.BadParameter(
                "--keep makes a backup; --list only lists", param_hint="--keep"
            )
        _show(_run(lambda _db, store: backups.list_backups(store)))
        return

    async def work(db: AsyncIOMotorDatabase, store: ObjectStore) -> tuple[Manifest, list[str]]:
        manifest = await backups.backup(db, store, progress=_progress)
        return manifest, await backups.prune(store, keep) if keep else []

    manifest, pruned = _run(work)
    size = sum(file.bytes for file in manifest.files)
    counts = ", ".join(f"{name} {count}" for name, count in manifest.counts().items())
    console.print(
        f"backup {manifest.name}: {counts} ({_size(size)})", highlight=False, soft_wrap=True
    )
    for name in pruned:
        console.print(f"deleted backup {name}", highlight=False, soft_wrap=True)


def restore(
    name: Annotated[
        str, typer.Argument(metavar="BACKUP|latest", help="A name from `mugpos backup --list`.")
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Drop the backed-up collections first when not empty."),
    ] = False,
) -> None:
    """Restore a backup into MUGPOS_MONGODB_DB, after checking every file's checksum."""
    from infra import backup as backups

    async def work(db: AsyncIOMotorDatabase, store: ObjectStore) -> tuple[str, dict[str, int]]:
        manifest = await backups.read_manifest(store, name)
        counts = await backups.restore(db, store, manifest, force=force, progress=_progress)
        return manifest.name, counts

    restored, counts = _run(work)
    summary = ", ".join(f"{collection} {count}" for collection, count in counts.items())
    console.print(f"restored backup {restored}: {summary}", highlight=False, soft_wrap=True)


def _run(work: Callable[[AsyncIOMotorDatabase, ObjectStore], Awaitable[T]]) -> T:
    """`work(db, store)`; a refused or unreachable backup is one line and exit code 1."""
    from pymongo.errors import PyMongoError

    from infra.backup import BackupError

    settings = load_or_exit()
    try:
        return asyncio.run(_with_services(settings, work))
    except BackupError as exc:
        message = str(exc)
    except PyMongoError as exc:
        log.debug("MongoDB failed", exc_info=exc)
        reason = str(exc).split(", Timeout:")[0][:200]  # not the whole topology description
        message = f"MongoDB database {settings.mongodb_db}: {type(exc).__name__}: {reason}"
    errors.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


async def _with_services(
    settings: Settings, work: Callable[[AsyncIOMotorDatabase, ObjectStore], Awaitable[T]]
) -> T:
    from infra import mongo
    from infra.object_store import create_object_store

    client = mongo.create_client(settings)
    store = create_object_store(settings)
    try:
        return await work(mongo.database(client, settings), store)
    finally:
        await store.close()
        client.close()


def _progress(message: str) -> None:
    errors.print(message, highlight=False, soft_wrap=True)


def _show(listings: list[Listing]) -> None:
    from infra.backup import PREFIX

    if not listings:
        console.print(f"no backups under {PREFIX}", highlight=False, soft_wrap=True)
        return
    table = Table("backup (UTC)", "documents", "size")
    table.columns[0].no_wrap = True
    for listing in listings:
        if listing.manifest is None:
            table.add_row(listing.name, "[yellow]unfinished[/]", _size(listing.size))
            continue
        counts = listing.manifest.counts()
        detail = ", ".join(f"{name} {count}" for name, count in counts.items())
        table.add_row(listing.name, f"{sum(counts.values())} ({detail})", _size(listing.size))
    console.print(table)


def _size(size: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    unit = 0
    while size >= 1024 and unit < len(units) - 1:
        size, unit = size / 1024, unit + 1
    return f"{size:.0f} B" if unit == 0 else f"{size:.1f} {units[unit]}"
