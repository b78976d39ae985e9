"""How `mugpos api` serves the app with uvicorn: the HTTP protocol it uses on every connection.

uvicorn writes a response's head and body in two sends. asyncio turns Nagle's algorithm off
(TCP_NODELAY) only on sockets whose protocol number says TCP, and with `--workers N` uvicorn binds
the shared listening socket as `socket.socket(AF_INET)` (protocol 0), so every accepted
connection keeps Nagle on: the body waits for the client's delayed ACK of the head, 40 ms per
response (measured: /health 1.8 ms with one process, 44 ms with two). Setting TCP_NODELAY on each
connection as it is made fixes it whatever the socket's origin.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

#: uvicorn's `http=` setting: an import path its worker processes can resolve.
HTTP_PROTOCOL = "api.serving:NoDelayHTTPProtocol"


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP protocol (httptools when installed, else h11), Nagle off."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]
