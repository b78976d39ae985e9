"""`WS /ws/control-plane`: results (optionally for one source) and system events, live; and
`POST /api/v1/ws-ticket`, how a browser opens it without putting its token in the URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from api.deps import authenticate, require, services
from api.live_throttle import LatestPerSource
from api.problems import Problem, problem_responses
from api.services import ApiServices
from core.access import Principal, allowed
from infra.ws_tickets import TicketStore, TicketStoreUnavailable

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)
MAX_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes
MIN_THROTTLE_MS = 50


class WsTicket(BaseModel):
    ticket: str = Field(description="Open the WebSocket with `?ticket=` within `expires_in` s.")
    expires_in: int = Field(description="Seconds the ticket stays valid; it is good for one use.")


@router.post(
    "/api/v1/ws-ticket",
    response_model=WsTicket,
    responses=problem_responses(ticket_store_unavailable=503),
)
async def ws_ticket(
    response: Response,
    svc: Annotated[ApiServices, Depends(services)],
    principal: Annotated[Principal, Depends(require("read:analysis"))],
) -> WsTicket:
    """A single-use ticket for `WS /ws/control-plane?ticket=…`, valid for 30 s. Browsers cannot
    set headers on a WebSocket; a ticket keeps their token out of URLs, and so out of logs."""
    store = _tickets(svc)
    try:
        ticket = await store.issue(principal)
    except TicketStoreUnavailable as exc:
        raise _tickets_unavailable(exc) from None
    response.headers["Cache-Control"] = "no-store"
    return WsTicket(ticket=ticket, expires_in=int(store.ttl_s))


@router.websocket("/ws/control-plane")
async def control_plane(
    websocket: WebSocket,
    source_id: str | None = None,
    latest_per_source_ms: Annotated[int | None, Query(ge=MIN_THROTTLE_MS, le=60_000)] = None,
) -> None:
    """Authenticate with `?ticket=` (from POST /api/v1/ws-ticket: browsers), an Authorization
    header or `X-API-Key` (other clients); `?token=<jwt>` still works but puts the token in the
    URL. Needs read:analysis. Sends `{"type": "result"|..., "data": {...}}` frames. With
    `latest_per_source_ms`, at most one result per source per that interval, the latest, with
    `coalesced` telling how many results it stands for (api.live_throttle). A refused
    caller's socket is closed with 4401 (no, bad or used credentials), 4403 (not allowed) or
    4503 (tickets cannot be checked now; retry), the reason starting with the problem's code."""
    svc: ApiServices = websocket.app.state.services
    try:
        principal = await _caller(websocket, svc)
        if not allowed(principal.role, "read:analysis"):
            raise Problem(
                403, f"role {principal.role!r} lacks permission 'read:analysis'", code="forbidden"
            )
    except Problem as problem:
        await _refuse(websocket, problem)
        return
    websocket.state.principal = principal  # for the access log
    await websocket.accept()
    with svc.hub.subscribe(source_id) as subscription:
        await websocket.send_json(
            {"type": "hello", "data": {"subject": principal.subject, "source_id": source_id}}
        )
        throttle = LatestPerSource(latest_per_source_ms / 1000) if latest_per_source_ms else None
        sender = asyncio.create_task(_forward(websocket, subscription.queue, throttle))
        try:
            with contextlib.suppress(WebSocketDisconnect):
                while True:  # the client says nothing; this notices when it leaves
                    await websocket.receive_text()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


async def _caller(websocket: WebSocket, svc: ApiServices) -> Principal:
    """Who opens the socket: by ticket, else by token or API key; raises Problem."""
    ticket = websocket.query_params.get("ticket")
    if ticket is None:
        header = websocket.headers.get("authorization", "")
        bearer = websocket.query_params.get("token") or header.removeprefix("Bearer ").strip()
        return await authenticate(svc, bearer or None, websocket.headers.get("x-api-key"))
    try:
        holder = await _tickets(svc).redeem(ticket)
    except TicketStoreUnavailable as exc:
        raise _tickets_unavailable(exc) from None
    if holder is None:
        raise Problem(
            401,
            "unknown, expired or already used ticket; get a new one from POST /api/v1/ws-ticket",
            code="bad_ticket",
        )
    if holder.kind == "api_key":
        return holder
    role = await svc.users.role_of(holder.subject)  # a ban or demotion since the ticket counts
    if role is None:
        raise Problem(401, "the ticket's user no longer exists or is disabled", code="bad_ticket")
    return Principal(holder.subject, role, "user")


def _tickets(svc: ApiServices) -> TicketStore:
    return TicketStore(svc.redis, svc.db, svc.settings.topic_prefix)


def _tickets_unavailable(exc: TicketStoreUnavailable) -> Problem:
    log.warning("WebSocket tickets unavailable: %s", exc.__cause__ or exc)
    return Problem(
        503,
        "WebSocket tickets cannot be issued or checked right now; retry shortly",
        code="ticket_store_unavailable",
        headers={"Retry-After": "5"},
    )


async def _refuse(websocket: WebSocket, problem: Problem) -> None:
    """Accept, then close with 4000 + the HTTP status (4401, 4403, 4503) and `code: detail` as
    the reason, as graphql-ws does: a browser's WebSocket API shows a close code and reason, but
    never the status of a refused handshake."""
    await websocket.accept()
    text = f"{problem.code}: {problem.detail}" if problem.code else problem.detail
    reason = text.encode()[:MAX_REASON_BYTES]
    await websocket.close(4000 + problem.status, reason.decode(errors="ignore"))


async def _forward(
    websocket: WebSocket, queue: asyncio.Queue, throttle: LatestPerSource | None
) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            if throttle is None:
                await websocket.send_json(await queue.get())
                continue
            # What is due goes first, on every pass: a steady stream cannot starve it.
            for frame in throttle.due(loop.time()):
                await websocket.send_json(frame)
            due_at = throttle.next_due()
            wait = None if due_at is None else max(0.0, due_at - loop.time())
            try:
                event = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                continue
            for frame in throttle.offer(event, loop.time()):
                await websocket.send_json(frame)
