"""`mugpos api --workers N` shares a listening socket bound without a protocol number, on which
asyncio leaves Nagle on; the API's HTTP protocol turns it off per connection (else every
response waits ~40 ms for a delayed ACK)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.server import ServerState

from api.serving import HTTP_PROTOCOL, NoDelayHTTPProtocol


async def _nodelay_of_accepted(protocol: type[asyncio.Protocol]) -> int:
    config = uvicorn.Config(app=lambda scope, receive, send: None, http=HTTP_PROTOCOL)
    config.load()
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(protocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    listener = socket.socket(socket.AF_INET)  # how uvicorn binds it for several workers
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = await asyncio.get_running_loop().create_server(
        lambda: Probe(config=config, server_state=ServerState(), app_state={}), sock=listener
    )
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
    finally:
        server.close()


@pytest.mark.parametrize(
    ("protocol", "nagle_off"), [(NoDelayHTTPProtocol, True), (AutoHTTPProtocol, False)]
)
async def test_connections_on_a_shared_socket_get_tcp_nodelay(
    protocol: type[asyncio.Protocol], nagle_off: bool
) -> None:
    assert bool(await _nodelay_of_accepted(protocol)) is nagle_off


def test_uvicorn_resolves_the_protocol_by_name() -> None:
    config = uvicorn.Config(app=lambda scope, receive, send: None, http=HTTP_PROTOCOL)
    config.load()
    assert config.http_protocol_class is NoDelayHTTPProtocol
