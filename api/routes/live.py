"""`WS /ws/control-plane`: results (optionally for one source) and system events, live."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api import tokens
from api.deps import authenticate
from api.problems import Problem
from core.access import allowed

router = APIRouter(tags=["live"])
POLICY_VIOLATION = 1008


@router.websocket("/ws/control-plane")
async def control_plane(websocket: WebSocket, source_id: str | None = None) -> None:
    """Authenticate with `?token=<jwt>` (browsers cannot set headers), an Authorization header
    or `X-API-Key`; needs read:analysis. Sends `{"type": "result"|..., "data": {...}}` frames."""
    svc = websocket.app.state.services
    header = websocket.headers.get("authorization", "")
    bearer = websocket.query_params.get("token") or header.removeprefix("Bearer ").strip() or None
    try:
        principal = await authenticate(svc, bearer, websocket.headers.get("x-api-key"))
    except (Problem, tokens.InvalidToken) as exc:
        await websocket.close(POLICY_VIOLATION, reason=str(exc)[:120])
        return
    if not allowed(principal.role, "read:analysis"):
        await websocket.close(POLICY_VIOLATION, reason="forbidden")
        return
    await websocket.accept()
    with svc.hub.subscribe(source_id) as subscription:
        await websocket.send_json(
            {"type": "hello", "data": {"subject": principal.subject, "source_id": source_id}}
        )
        sender = asyncio.create_task(_forward(websocket, subscription.queue))
        try:
            with contextlib.suppress(WebSocketDisconnect):
                while True:  # the client says nothing; this notices when it leaves
                    await websocket.receive_text()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


async def _forward(websocket: WebSocket, queue: asyncio.Queue) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.send_json(await queue.get())
