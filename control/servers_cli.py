"""`mugpos servers`: the operator's view of the workers and commands, through the API (so every
command is authorised and audited under the operator's identity)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from control.console import console

servers_app = typer.Typer(help="See and steer pipeline workers (through the API).")
API_URL = typer.Option(envvar="MUGPOS_API_URL", help="Base URL of the API.")
TOKEN = typer.Option(envvar="MUGPOS_API_TOKEN", help="A manager's or admin's token or API key.")


def _headers(token: str) -> dict[str, str]:
    return (
        {"X-API-Key": token} if token.startswith("mpk_") else {"Authorization": f"Bearer {token}"}
    )


def _call(method: str, url: str, token: str, **kwargs):
    import httpx

    try:
        reply = httpx.request(method, url, headers=_headers(token), timeout=30, **kwargs)
    except httpx.TransportError as exc:
        console.print(f"[red]error:[/] cannot reach the API at {url}: {exc}")
        raise typer.Exit(1) from None
    if reply.status_code >= 400:
        detail = reply.json().get("detail", reply.text) if reply.content else reply.reason_phrase
        console.print(f"[red]error {reply.status_code}:[/] {detail}", highlight=False)
        raise typer.Exit(1)
    return reply.json()


@servers_app.command("list")
def list_servers(
    api_url: Annotated[str, API_URL] = "http://127.0.0.1:8000",
    token: Annotated[str, TOKEN] = "",
    as_json: Annotated[bool, typer.Option("--json", help="The raw registry document.")] = False,
) -> None:
    """Every worker: state, partitions, model, batch settings, throughput, resources."""
    view = _call("GET", f"{api_url}/api/v1/servers", token)
    if as_json:
        console.print_json(json.dumps(view))
        return
    table = Table("worker", "state", "partitions", "model", "batch", "img/min", "cpu %", "rss MB")
    for w in view["workers"]:
        table.add_row(
            w["worker_id"],
            w["state"],
            str(len(w["partitions"])),
            w["model"] or "-",
            str(w["max_batch"]),
            str(w["images_last_minute"]),
            f"{w['cpu_percent']:.0f}",
            f"{w['rss_mb']:.0f}",
        )
    console.print(table)
    scaling = view["scaling"]
    console.print(
        f"backlog {scaling['backlog_messages']} messages; inference workers now "
        f"{scaling['inference_workers_now']}, needed for {scaling['target_s']} s: "
        f"{scaling['inference_workers_needed']}; GPU cost ${view['totals']['cost_usd']}"
    )


@servers_app.command()
def command(
    worker: Annotated[str, typer.Argument(help="A worker id, or `all`.")],
    action: Annotated[
        str, typer.Argument(help="pause, resume, drain, set, switch_model or reload_rules.")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value, e.g. max_batch=4.")
    ] = None,
    api_url: Annotated[str, API_URL] = "http://127.0.0.1:8000",
    token: Annotated[str, TOKEN] = "",
) -> None:
    """Send a command and show each worker's acknowledgement."""
    params: dict[str, object] = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep:
            console.print(f"[red]error:[/] --param wants name=value, got {item!r}")
            raise typer.Exit(2)
        params[name] = json.loads(value) if value.replace(".", "", 1).isdigit() else value
    reply = _call(
        "POST",
        f"{api_url}/api/v1/servers/{worker}/commands",
        token,
        json={"action": action, "params": params},
    )
    for worker_id, ack in reply["acks"].items():
        verdict = "[green]applied[/]" if ack["ok"] else f"[red]refused[/]: {ack['reason']}"
        console.print(f"{worker_id}: {verdict}")
    if not reply["acks"]:
        console.print(f"sent {reply['command_id']}; no acknowledgement within 5 s")
