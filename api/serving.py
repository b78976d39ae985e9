"""How `mugpos api` serves the app with uvicorn: the app factory every server process runs, and
the HTTP protocol it uses on every connection.

uvicorn's `--workers N` processes are spawned, not forked: nothing the parent set up is in them,
logging included. So each builds its app through `served_app`, which first configures logging
from MUGPOS_LOG_LEVEL and MUGPOS_DRIVER_LOG_LEVEL (infra.logging_setup), as the parent did; uvicorn
itself is told to leave logging alone.

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

from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from api.main import create_app
from core.config import load_settings
from infra.logging_setup import configure_logging

#: uvicorn's `http=` setting: an import path its worker processes can resolve.
HTTP_PROTOCOL = "api.serving:NoDelayHTTPProtocol"
#: uvicorn's app factory for several processes (`factory=True`).
APP_FACTORY = "api.serving:served_app"


def served_app() -> FastAPI:
    """The app of one server process, logging as every `mugpos` process does."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.driver_log_level, settings.log_format)
    return create_app(settings)


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP protocol (httptools when installed, else h11), Nagle off."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]
