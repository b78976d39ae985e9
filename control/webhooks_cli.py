"""`mugpos webhooks`: the endpoints alert events are delivered to (name, URL, format, signing
secret) and their delivery log, through the API (SDK); and `run`, the dispatcher process."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from control.console import console, load_or_exit
from mugpos.client import Client

webhooks_app = typer.Typer(
    help="Webhook endpoints for alert events, and their delivery log.", no_args_is_help=True
)
Name = Annotated[
    str, typer.Argument(help="The endpoint's name, as rules' webhook actions and sources use it.")
]


class Format(StrEnum):  # what core.webhooks.Format allows
    json = "json"
    slack = "slack"


class Status(StrEnum):  # the delivery log's states (infra.webhooks_store.DeliveryStatus)
    pending = "pending"
    delivered = "delivered"
    dead_lettered = "dead_lettered"
    refused = "refused"


def _print_json(data: Any) -> None:
    console.file.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@webhooks_app.command("list")
def list_webhooks(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every webhook endpoint (signing secrets are never shown)."""
    with Client.from_login() as client:
        endpoints = client.webhooks()
    if as_json:
        _print_json(endpoints)
        return
    table = Table("name", "url", "format", "enabled", "updated", "by")
    for e in endpoints:
        table.add_row(
            e["name"],
            escape(e["url"]),
            e["format"],
            "yes" if e["enabled"] else "no",
            e["updated_at"],
            e["updated_by"] or "-",
        )
    console.print(table)


@webhooks_app.command("get")
def get_webhook(name: Name) -> None:
    """One endpoint as JSON."""
    with Client.from_login() as client:
        _print_json(client.webhook(name))


@webhooks_app.command("put")
def put_webhook(
    name: Name,
    url: Annotated[str, typer.Argument(help="Where events are POSTed: http:// or https://.")],
    format: Annotated[
        Format,
        typer.Option(
            "--format",
            help="json: the alert event itself; slack: a Slack incoming-webhook message.",
        ),
    ] = Format.json,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Store it disabled: it is sent nothing.")
    ] = False,
    rotate_secret: Annotated[
        bool, typer.Option("--rotate-secret", help="Issue a new signing secret.")
    ] = False,
) -> None:
    """Create an endpoint or replace its settings; prints a new signing secret once.

    The secret is issued on creation and with --rotate-secret, and cannot be read back later:
    store it where the receiver verifies X-Mugpos-Signature."""
    with Client.from_login() as client:
        stored = client.put_webhook(
            name, url, format=format.value, enabled=not disabled, rotate_secret=rotate_secret
        )
    state = "enabled" if stored["enabled"] else "disabled"
    console.print(f"{name}: stored ({stored['format']}, {state})", highlight=False)
    secret = stored.get("secret")
    if secret:
        console.print(
            "signing secret (shown once, it cannot be read back; verify X-Mugpos-Signature "
            "with it):",
            highlight=False,
        )
        # Unstyled and alone on its line, so that it can be copied or piped.
        console.file.write(secret + "\n")


@webhooks_app.command("delete")
def delete_webhook(name: Name) -> None:
    """Delete an endpoint and its secret (its delivery log stays)."""
    with Client.from_login() as client:
        client.delete_webhook(name)
    console.print(f"{name}: deleted", highlight=False)


@webhooks_app.command("deliveries")
def deliveries(
    endpoint: Annotated[str | None, typer.Option(help="Only deliveries to this endpoint.")] = None,
    status: Annotated[Status | None, typer.Option(help="Only deliveries in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The delivery log, newest first: each alert event's delivery to each endpoint."""
    with Client.from_login() as client:
        log = client.webhook_deliveries(
            endpoint=endpoint,
            status=status.value if status else None,
            limit=limit,
        )
    if as_json:
        _print_json(log)
        return
    table = Table("created", "endpoint", "event", "source", "rule", "status", "tries", "last")
    for d in log:
        last = d["last_error"] or (str(d["last_status_code"]) if d["last_status_code"] else "-")
        table.add_row(
            d["created_at"],
            d["endpoint"],
            d["event"],
            d["source_id"],
            d["rule_id"],
            d["status"],
            str(d["attempts"]),
            escape(last),
        )
    console.print(table)


@webhooks_app.command("run")
def run() -> None:
    """Deliver alert events to webhook endpoints (the dispatcher process)."""
    from agents.webhooks import serve

    asyncio.run(serve(load_or_exit()))
