"""`mugpos api` serves the HTTP API; `mugpos users add|key` creates the first accounts."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from control.console import console, load_or_exit

users_app = typer.Typer(help="API accounts and machine keys.", no_args_is_help=True)


def api(
    host: Annotated[str | None, typer.Option(help="Default: MUGPOS_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: MUGPOS_API_PORT.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port (one event loop each); e.g. one per core.",
        ),
    ] = 1,
) -> None:
    """Serve the API (docs at /api/docs) until Ctrl-C."""
    import uvicorn

    from api.main import create_app
    from api.serving import APP_FACTORY, HTTP_PROTOCOL

    settings = load_or_exit()
    if settings.jwt_secret is None:
        console.print("[red]error:[/] set MUGPOS_JWT_SECRET (>= 32 random characters) first")
        raise typer.Exit(2)
    # Several processes need the app by name: each builds its own (clients, producer, followers)
    # and configures its logging from the same MUGPOS_* environment and .env this process read.
    app = create_app(settings) if workers == 1 else APP_FACTORY
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        http=HTTP_PROTOCOL,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_config=None,  # logging is infra.logging_setup's, in this process and every worker
        access_log=False,  # the app writes its own JSON access log, without query strings
        proxy_headers=False,  # api.client_ip trusts X-Forwarded-For from MUGPOS_TRUSTED_PROXIES
        timeout_graceful_shutdown=10,  # live subscribers must not hold a restart up
    )


async def _with_users(work):
    from infra import mongo
    from infra.users_store import UsersRepository

    settings = load_or_exit()
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        return await work(UsersRepository(db, key))
    finally:
        client.close()


@users_app.command("add")
def add_user(
    username: str,
    role: Annotated[str, typer.Option(help="viewer, analyst, manager or admin.")] = "viewer",
    email: Annotated[str | None, typer.Option(help="Stored encrypted.")] = None,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="MUGPOS_NEW_USER_PASSWORD",
            help="Prompted for when not given (or from MUGPOS_NEW_USER_PASSWORD).",
        ),
    ] = "",
) -> None:
    """Create a user, e.g. the first admin: `mugpos users add alice --role admin`."""
    from infra.users_store import UserExists

    try:
        asyncio.run(_with_users(lambda users: users.add_user(username, password, role, email)))  # type: ignore[arg-type]
    except (UserExists, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"added {username} ({role})")


@users_app.command("key")
def add_key(
    name: str,
    role: Annotated[str, typer.Option(help="viewer, analyst, manager or admin.")] = "analyst",
) -> None:
    """Create an API key for a machine client; it is printed once and only its hash is kept."""
    try:
        key = asyncio.run(_with_users(lambda users: users.add_api_key(name, role)))  # type: ignore[arg-type]
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(key, highlight=False, soft_wrap=True)
