"""`mugpos users disable|enable|delete|keys|revoke-key`: the break-glass path to the same account
changes the API offers admins, audited as `cli:<login name>` since no API account is involved."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from control.console import console, load_or_exit

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from infra.users_store import UsersRepository

T = TypeVar("T")


def disable_user(username: str) -> None:
    """Disable a user: no more logins, and their tokens stop working within seconds."""
    _change(lambda users: users.set_disabled(username, True), "users.disable", username)
    console.print(f"disabled {username}", highlight=False)


def enable_user(username: str) -> None:
    """Enable a disabled user again."""
    _change(lambda users: users.set_disabled(username, False), "users.enable", username)
    console.print(f"enabled {username}", highlight=False)


def delete_user(
    username: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user for good (`disable` keeps the account for later)."""
    if not yes:
        typer.confirm(f"delete user {username}?", abort=True)
    _change(lambda users: users.delete_user(username), "users.delete", username)
    console.print(f"deleted {username}", highlight=False)


def list_keys() -> None:
    """Every API key (id, name, role, revoked), never a secret."""
    keys = _run(lambda users, _db: users.api_keys())
    table = Table("key id", "name", "role", "revoked", "created")
    for key in keys:
        table.add_row(
            str(key["key_id"]),
            str(key["name"]),
            str(key["role"]),
            "yes" if key.get("revoked") else "no",
            str(key.get("created_at", "")),
        )
    console.print(table)


def revoke_key(key_id: str) -> None:
    """Revoke an API key by id (`mugpos users keys` lists them); refused from its next request."""
    _change(lambda users: users.revoke_api_key(key_id), "api_keys.revoke", key_id)
    console.print(f"revoked {key_id}", highlight=False)


def _change(work: Callable[[UsersRepository], Awaitable[None]], action: str, resource: str) -> None:
    """Run `work` on the users repository and audit it once it succeeded."""

    async def audited(users: UsersRepository, db: AsyncIOMotorDatabase) -> None:
        from infra import activity_log

        await work(users)
        await activity_log.record(db, user_id=_operator(), action=action, resource=resource)

    _run(audited)


def _run(work: Callable[[UsersRepository, AsyncIOMotorDatabase], Awaitable[T]]) -> T:
    """`work(users, db)` against MongoDB; a refusal is one line and exit code 2."""
    from infra.users_store import KeyNotFound, LastAdmin, UserNotFound

    try:
        return asyncio.run(_with_repository(work))
    except (KeyNotFound, LastAdmin, UserNotFound) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


async def _with_repository(
    work: Callable[[UsersRepository, AsyncIOMotorDatabase], Awaitable[T]],
) -> T:
    from infra import mongo
    from infra.users_store import UsersRepository

    settings = load_or_exit()
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        return await work(UsersRepository(db, key), db)
    finally:
        client.close()


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in the environment nor the password database
        return "cli:unknown"
