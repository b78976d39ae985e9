"""Every request: metrics by route template, and an access log without secrets (one line per
HTTP request or WebSocket connection, its fields at the top level of the JSON line; the path never
carries its query string, which may hold a token or ticket). A caller's `X-Request-ID` is bound as
`request_id` to every line logged while its request is served.

A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware
runs the app in a task of its own and streams the response back through a memory channel, on
every request — a good share of an upload's CPU time. This one only watches `send`.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.client_ip import client_ip
from infra.logging_setup import ACCESS_LOGGER, bind_context, redact_server_logs, unbind_context

access_log = logging.getLogger(ACCESS_LOGGER)
#: A caller's correlation id (`X-Request-ID`), logged when it looks like one.
_REQUEST_ID = re.compile(rb"^[\w.:@/+=-]{1,128}$")


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        redact_server_logs()  # the server's own lines quote WebSocket URLs, query and all

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers: an exception escaped to the server's handler
        request_id = _request_id(scope)
        if request_id is not None:  # this request's task and what it starts (contextvars)
            bind_context(request_id=request_id)

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            if request_id is not None:
                unbind_context("request_id")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One access line per connection, when it ends: 101, how long it lasted and the close
        code the app ended it with (4401: refused credentials), or the status of a refused
        handshake (a close before accepting is uvicorn's 403)."""
        started = time.perf_counter()
        status, closed = 500, None

        async def watch(message: Message) -> None:
            nonlocal status, closed
            kind = message["type"]
            if kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close":
                status = 403 if status == 500 else status
                closed = message.get("code", 1000)
            elif kind == "websocket.http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._log(scope, "WS", status, time.perf_counter() - started, close=closed)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        svc = getattr(scope["app"].state, "services", None)
        if svc is not None:
            svc.metrics.http_requests.labels(method, endpoint, status).inc()
            svc.metrics.http_duration.labels(method, endpoint).observe(elapsed)
        self._log(scope, method, status, elapsed)

    @staticmethod
    def _log(
        scope: Scope, method: str, status: int, elapsed: float, close: int | None = None
    ) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        principal = scope.get("state", {}).get("principal")
        line: dict[str, object] = {
            "method": method,
            "path": scope["path"],  # never the query string: it may hold a token or ticket
            "endpoint": getattr(scope.get("route"), "path", "unmatched"),
            "status": status,
            "ms": round(elapsed * 1000, 2),
            "ip": client_ip(HTTPConnection(scope)),
            "user": principal.subject if principal else None,
        }
        if close is not None:
            line["close"] = close
        request_id = _request_id(scope)
        if request_id is not None:
            line["request_id"] = request_id
        # The fields travel as the record's extras; the formatter (infra.logging_setup) renders
        # them as top-level keys of the JSON line, with `ts`.
        access_log.info("request", extra=line)


def _request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _REQUEST_ID.match(value):
            return value.decode()
    return None
