"""What `mugpos api` writes to its log, and WebSocket tickets: a JSON access line per request,
never a token, ticket, password or stored document — checked on the output of the real command,
with one server process and with two."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from control.console import mugpos_argv
from core.access import Principal
from core.config import Settings, settings_env
from infra.clients import Clients
from infra.launchers import free_port
from infra.ws_tickets import TicketStore
from tests.integration.api_server import (
    PASSWORD,
    ApiServer,
    add_role_users,
    api_settings,
    login,
    start_api,
)

pytestmark = pytest.mark.integration
WS_PATH = "/ws/control-plane"


@dataclass
class ServedApi:
    """`mugpos … api` as a child process, its stdout and stderr in one file."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, query: str) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}?{query}"

    def stop(self) -> str:
        """Stop the server (flushing every process's output) and return what it wrote."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        return self.log.read_text()


def _serve(settings: Settings, tmp_path: Path, *argv: str, **env: str) -> Iterator[ServedApi]:
    asyncio.run(add_role_users(settings))
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            mugpos_argv(*argv, "--port", str(port)),
            env={**os.environ, **settings_env(settings), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = ServedApi(process, port, log)
    try:
        deadline = time.monotonic() + 90
        while not _ready(served.url):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def verbose_api(api_deployment: Settings, tmp_path: Path) -> Iterator[ServedApi]:
    """`mugpos -v api` (one process), MUGPOS_LOG_LEVEL=DEBUG: as talkative as it gets."""
    yield from _serve(api_deployment, tmp_path, "-v", "api", MUGPOS_LOG_LEVEL="DEBUG")


@pytest.fixture
def two_process_api(api_deployment: Settings, tmp_path: Path) -> Iterator[ServedApi]:
    """`mugpos api --workers 2`, MUGPOS_LOG_LEVEL=DEBUG: spawned processes configure their own."""
    yield from _serve(api_deployment, tmp_path, "api", "--workers", "2", MUGPOS_LOG_LEVEL="DEBUG")


def _token(url: str, username: str) -> str:
    reply = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def _ticket(url: str, headers: dict[str, str]) -> str:
    reply = httpx.post(f"{url}/api/v1/ws-ticket", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["expires_in"] == 30
    assert reply.headers["cache-control"] == "no-store"
    return reply.json()["ticket"]


async def _hello(url: str, **kwargs: object) -> dict:
    async with websockets.connect(url, **kwargs) as socket:
        return orjson.loads(await asyncio.wait_for(socket.recv(), 30))


@dataclass
class Refusal:
    """How the API ended a socket it would not serve: close code and reason."""

    code: int
    reason: str


async def _refused(url: str) -> Refusal:
    async with websockets.connect(url) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 30)
    frame = closed.value.rcvd
    assert frame is not None
    return Refusal(frame.code, frame.reason)


def _access_lines(log: str) -> list[dict]:
    """The access lines among the server's: every line is a JSON object (its output is not a
    terminal, so MUGPOS_LOG_FORMAT=auto writes JSON) with a level, a logger and a time."""
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = orjson.loads(line)  # a line that starts like JSON must be JSON
            assert {"ts", "level", "logger", "event"} <= set(entry), entry
            if entry["logger"] == "mugpos.access":
                lines.append(entry)
    return lines


def test_the_log_has_an_access_line_per_request_and_no_credential(verbose_api: ServedApi) -> None:
    url = verbose_api.url
    token = _token(url, "analyst")
    bearer = {"Authorization": f"Bearer {token}", "X-Request-ID": "trace-42"}
    key = httpx.post(
        f"{url}/api/v1/api-keys",
        json={"name": "camera-7", "role": "viewer"},
        headers={"Authorization": f"Bearer {_token(url, 'admin')}"},
    ).json()["api_key"]
    # Credentials in query strings of plain requests: ignored by the API, never logged.
    summary = httpx.get(
        f"{url}/api/v1/dashboard/summary",
        params={"token": token, "api_key": key, "password": PASSWORD},
        headers=bearer,
    )
    assert summary.status_code == 200, summary.text
    ticket = _ticket(url, bearer)
    hello = asyncio.run(_hello(verbose_api.ws(f"ticket={ticket}&source_id=desk-1")))
    assert hello == {"type": "hello", "data": {"subject": "analyst", "source_id": "desk-1"}}
    # A token in the URL still opens the socket (non-browser clients); headers work too.
    assert asyncio.run(_hello(verbose_api.ws(f"token={token}")))["type"] == "hello"
    by_key = asyncio.run(
        _hello(verbose_api.ws("source_id=d"), additional_headers={"X-API-Key": key})
    )
    assert by_key["data"]["subject"] == "key:camera-7"
    again = asyncio.run(_refused(verbose_api.ws(f"ticket={ticket}")))  # single use
    assert again.code == 4401
    assert again.reason.startswith("bad_ticket: unknown, expired or already used ticket")

    log = verbose_api.stop()
    for secret in (token, ticket, key, PASSWORD):
        assert secret not in log
    # pymongo at DEBUG would quote the user documents it read while logging in.
    assert "password_hash" not in log
    assert "email_encrypted" not in log
    assert "sec-websocket-key" not in log  # uvicorn's header trace is the driver level's
    assert "ticket=***" in log  # uvicorn's own handshake lines are there, masked

    access = _access_lines(log)
    seen = {(a["method"], a["path"], a["status"]) for a in access}
    assert {
        ("POST", "/api/v1/auth/token", 200),
        ("POST", "/api/v1/api-keys", 201),
        ("GET", "/api/v1/dashboard/summary", 200),
        ("POST", "/api/v1/ws-ticket", 200),
        ("WS", WS_PATH, 101),
    } <= seen, seen
    for entry in access:
        assert entry["ip"] == "127.0.0.1"
        assert isinstance(entry["ms"], float | int)
        assert entry["ts"]
    summary_line = next(a for a in access if a["path"] == "/api/v1/dashboard/summary")
    assert summary_line["user"] == "analyst"
    assert summary_line["request_id"] == "trace-42"
    sockets = [a.get("close") for a in access if a["method"] == "WS" and a["status"] == 101]
    assert sorted(sockets, key=str) == [4401, None, None, None]


def test_every_server_process_logs_access_lines_and_redeems_any_ticket(
    two_process_api: ServedApi,
) -> None:
    """Tickets are shared by the processes of `--workers 2`: each issued on one connection and
    redeemed on another, wherever the kernel sends them; each process logs as configured."""
    url = two_process_api.url
    bearer = {"Authorization": f"Bearer {_token(url, 'viewer')}"}
    for _ in range(6):
        ticket = _ticket(url, bearer)
        hello = asyncio.run(_hello(two_process_api.ws(f"ticket={ticket}")))
        assert hello["data"]["subject"] == "viewer"
        assert asyncio.run(_refused(two_process_api.ws(f"ticket={ticket}"))).code == 4401
    log = two_process_api.stop()
    access = _access_lines(log)
    assert sum(1 for a in access if a["path"] == "/api/v1/ws-ticket") == 6
    assert sum(1 for a in access if a["method"] == "WS") == 12
    assert "password_hash" not in log  # DEBUG in every process, drivers still at WARNING


@pytest.fixture(params=["redis", "mongodb"])
def ticket_api(request: pytest.FixtureRequest, api_deployment: Settings) -> Iterator[ApiServer]:
    """The API keeping tickets in Redis, or in MongoDB when Redis is not configured."""
    without_redis = {"redis_url": None} if request.param == "mongodb" else {}
    server = start_api(api_settings(api_deployment, **without_redis))
    try:
        yield server
    finally:
        server.stop()


async def _expired_ticket(settings: Settings) -> str:
    clients = Clients.open(settings)
    try:
        store = TicketStore(clients.redis, clients.db, settings.topic_prefix, ttl_s=0.5)
        ticket = await store.issue(Principal("viewer", "viewer"))
        await asyncio.sleep(1.0)
        return ticket
    finally:
        await clients.close()


def test_tickets_are_single_use_and_expire(ticket_api: ApiServer) -> None:
    ws = f"ws://127.0.0.1:{ticket_api.port}{WS_PATH}"
    ticket = _ticket(ticket_api.url, login(ticket_api, "manager"))
    assert asyncio.run(_hello(f"{ws}?ticket={ticket}"))["data"]["subject"] == "manager"
    for refused in (ticket, asyncio.run(_expired_ticket(ticket_api.settings)), "made-up"):
        answer = asyncio.run(_refused(f"{ws}?ticket={refused}"))
        assert (answer.code, answer.reason.split(":")[0]) == (4401, "bad_ticket")
    anonymous = httpx.post(f"{ticket_api.url}/api/v1/ws-ticket")
    assert anonymous.status_code == 401
    assert asyncio.run(_refused(ws)).reason.startswith("no_credentials:")


def test_without_redis_reachable_tickets_are_a_clear_503(api_deployment: Settings) -> None:
    down = api_settings(api_deployment, redis_url=f"redis://127.0.0.1:{free_port()}")
    server = start_api(down)
    try:
        headers = login(server, "viewer")
        issued = httpx.post(f"{server.url}/api/v1/ws-ticket", headers=headers)
        assert issued.status_code == 503
        assert issued.headers["content-type"] == "application/problem+json"
        assert issued.json()["code"] == "ticket_store_unavailable"
        assert "Error" not in issued.json()["detail"]  # no driver text for the caller
        answer = asyncio.run(_refused(f"ws://127.0.0.1:{server.port}{WS_PATH}?ticket=abc"))
        assert (answer.code, answer.reason.split(":")[0]) == (4503, "ticket_store_unavailable")
    finally:
        server.stop()
