"""Every HTTP request: the body-size guard, metrics by route template, and a JSON access log
without secrets.

A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware
runs the app in a task of its own and streams the response back through a memory channel, on
every request — a good share of an upload's CPU time. This one only watches `send`.
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems

access_log = logging.getLogger("mugpos.access")


class Observe:
    def __init__(self, app: ASGIApp, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers: an exception escaped to the server's handler

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self._too_large(scope):
                response = problems.problem_response(
                    Request(scope),
                    413,
                    f"request body over {self.max_request_bytes} bytes",
                    code="request_too_large",
                )
                await response(scope, receive, watch)
            else:
                await self.app(scope, receive, watch)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _too_large(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return value.isdigit() and int(value) > self.max_request_bytes
        return False

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        svc = getattr(scope["app"].state, "services", None)
        if svc is not None:
            svc.metrics.http_requests.labels(method, endpoint, status).inc()
            svc.metrics.http_duration.labels(method, endpoint).observe(elapsed)
        if not access_log.isEnabledFor(logging.INFO):
            return
        principal = scope.get("state", {}).get("principal")
        client = scope.get("client")
        access_log.info(
            orjson.dumps(
                {
                    "method": method,
                    "path": scope["path"],  # never the query string: it may hold a token
                    "endpoint": endpoint,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "ip": client[0] if client else None,
                    "user": principal.subject if principal else None,
                }
            ).decode()
        )
