"""The request-size cap, counted on the bytes that arrive rather than on what the headers claim.

A Content-Length over the limit is answered at once; a chunked body (no Content-Length) is
counted as the app reads it, and the moment the count passes the limit the read fails and the
client gets 413 `request_too_large` — the rest of the body is never read. Starlette's own
RequestBodyLimitMiddleware does the same but answers in plain text, not problem+json.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems


class BodyTooLarge(HTTPException):
    """Raised from `receive`: an HTTPException, so that whatever is reading the body (FastAPI's
    form parsing, a route) lets it through quietly instead of logging a crash."""

    def __init__(self) -> None:
        super().__init__(413)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared(scope) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        over = started = False

        async def counted() -> Message:
            nonlocal received, over
            if over:  # the app asked again after the refusal: never more of the body
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's own answer to the failed read: ours goes out instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(scope, receive, send)

    @staticmethod
    def _declared(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem_response(
            Request(scope),
            413,
            f"request body over {self.max_bytes} bytes",
            code="request_too_large",
            headers={"Connection": "close"},  # else the server reads the rest to reuse the socket
        )
        await response(scope, receive, send)
