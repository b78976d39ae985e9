"""Camera streams managed at run time: what the streams service (`mugpos streams run`) reads
for a source, and the health it reports for each (state, fps, counters, last frame).

A stream is the source's network camera (rtsp, rtsps, http, https: never a file, folder or
device of the host); the source need not be registered. Its URL is stored as given, since the
service needs the camera's password, and shown with the password as `***`. The service picks up
a new, changed or deleted stream within 2 s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, FiniteFloat, StrictBool

from api.deps import audit, require, services
from api.problems import Problem, problem_responses
from api.routes import JsonRoute, links
from api.services import ApiServices
from core.access import Principal
from core.ingest.change import BLOCKS
from core.ingest.source import mask_url, network_stream
from core.sources.spec import SOURCE_ID_PATTERN
from infra.streams_store import StoredStream, StreamState

router = APIRouter(prefix="/api/v1", tags=["streams"], route_class=JsonRoute)
_ONE = f"{router.prefix}/sources/{{source_id}}/stream"
Services = Annotated[ApiServices, Depends(services)]
SourceId = Annotated[str, Path(pattern=SOURCE_ID_PATTERN)]
MAX_URL_LENGTH = 2000


def _whole(value: object) -> object:
    """JSON's `106.0` as the integer 106, as JSON Schema counts it; 2.5, "5" and `true` are
    still refused by the strict integer after it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class StreamInput(BaseModel):
    """What the streams service reads for the source, and how it samples it; a PUT replaces
    it all."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="rtsp://, rtsps://, http:// or https:// (an MJPEG or other stream FFmpeg "
        "reads); credentials may be in it (rtsp://user:password@camera/…) and are stored, "
        "but never shown again. Anything else is refused with 422 `stream_invalid`.",
        examples=["rtsp://camera-7.lan/stream1"],
    )
    # Strict: a number, never "5" or `true` (the document says number; JSON has no other).
    every_s: FiniteFloat = Field(
        1.0,
        ge=0.1,
        le=86_400,
        strict=True,
        description="One frame per this many seconds (the newest the camera delivered).",
    )
    # Strict: JSON `1` or `"yes"` is no boolean here.
    on_change: StrictBool = Field(
        False, description="Skip frames that show nothing new since the last one sent."
    )
    change_threshold: Annotated[int, BeforeValidator(_whole)] = Field(
        2,
        ge=0,
        le=BLOCKS - 1,
        strict=True,
        description="With `on_change`: a frame with at most this many of the 1024 colour blocks "
        "changed counts as unchanged.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP over TCP or UDP.")


class StreamHealth(BaseModel):
    """What the streams service last reported for the stream (every 2 s and on state
    changes); `updated_at` older than a few seconds means no service is reading it."""

    state: StreamState = Field(
        description="`connecting`, `connected`, `reconnecting` (lost, being opened again with "
        "back-off), `stopped` (the service stopped) or `failed` (the capture ended "
        "unexpectedly; started again within 10 s)."
    )
    fps: float = Field(description="Frames read from the camera per second, last ~5 s.")
    frames_read: int
    sent: int = Field(description="Frames handed to Kafka.")
    unchanged: int = Field(description="Frames skipped by `on_change`.")
    dropped: int = Field(description="Frames replaced by a newer one while Kafka was busy.")
    reconnects: int = Field(description="Times the stream was lost and opened again.")
    last_frame_at: datetime | None = Field(description="When the newest frame was read.")
    error: str | None = Field(description="What is wrong, in words; null when nothing is.")
    service_id: str = Field(description="The service process reading it (host-pid).")
    updated_at: datetime


class StreamOut(BaseModel):
    """A source's stream (the URL's password shown as `***`) and its health."""

    source_id: str
    url: str
    every_s: float
    on_change: bool
    change_threshold: int
    rtsp_transport: Literal["tcp", "udp"]
    created_at: datetime
    updated_at: datetime
    updated_by: str | None
    health: StreamHealth | None = Field(
        description="Null until the streams service has picked the stream up (and after each "
        "change of its settings)."
    )


def _out(stream: StoredStream) -> StreamOut:
    return StreamOut(
        source_id=stream.source_id,
        url=mask_url(stream.url),
        every_s=stream.every_s,
        on_change=stream.on_change,
        change_threshold=stream.change_threshold,
        rtsp_transport=stream.rtsp_transport,  # type: ignore[arg-type] - stored by the API
        created_at=stream.created_at,
        updated_at=stream.updated_at,
        updated_by=stream.updated_by,
        health=StreamHealth.model_validate(stream.health) if stream.health else None,
    )


def _not_found(source_id: str) -> Problem:
    return Problem(404, f"source {source_id} has no stream", code="stream_not_found")


@router.get("/streams", response_model=list[StreamOut])
async def list_streams(
    svc: Services,
    _: Annotated[Principal, Depends(require("read:sources"))],
    state: Annotated[
        StreamState | None, Query(description="Only the streams in this state.")
    ] = None,
) -> list[StreamOut]:
    """Every managed stream by source id, with its health (passwords shown as `***`)."""
    return [_out(s) for s in await svc.streams.list(state)]


@router.get(
    "/sources/{source_id}/stream",
    response_model=StreamOut,
    responses=problem_responses(stream_not_found=404),
)
async def get_stream(
    source_id: SourceId, svc: Services, _: Annotated[Principal, Depends(require("read:sources"))]
) -> StreamOut:
    """The source's stream and its health (the URL's password shown as `***`)."""
    stream = await svc.streams.get(source_id)
    if stream is None:
        raise _not_found(source_id)
    return _out(stream)


_WRITTEN_LINKS = links(
    "source_id",
    GetStream=("GET", _ONE),
    ReplaceStream=("PUT", _ONE),
    DeleteStream=("DELETE", _ONE),
)


@router.put(
    "/sources/{source_id}/stream",
    response_model=StreamOut,
    responses={
        200: {"description": "Replaced.", "links": _WRITTEN_LINKS},
        201: {"model": StreamOut, "description": "Created.", "links": _WRITTEN_LINKS},
        **problem_responses(stream_invalid=422),
    },
)
async def put_stream(
    source_id: SourceId,
    body: StreamInput,
    request: Request,
    response: Response,
    svc: Services,
    who: Annotated[Principal, Depends(require("write:sources"))],
) -> StreamOut:
    """Creates the source's stream (201) or replaces its settings (200); the streams service
    starts, or restarts, reading it within 2 s. The URL must name a network stream (rtsp,
    rtsps, http, https with a host): a file, folder or device path is refused with 422
    `stream_invalid`. The source need not be registered."""
    try:
        network_stream(body.url)
    except ValueError as exc:
        raise Problem(422, str(exc), code="stream_invalid") from None
    stream, created = await svc.streams.put(source_id, body.model_dump(), who.subject)
    if created:
        response.status_code = 201
    await audit(
        request,
        "streams.create" if created else "streams.update",
        source_id,
        {  # the URL as shown: never a camera's password in the audit log
            "url": mask_url(body.url),
            "every_s": body.every_s,
            "on_change": body.on_change,
            "change_threshold": body.change_threshold,
            "rtsp_transport": body.rtsp_transport,
        },
    )
    return _out(stream)


@router.delete(
    "/sources/{source_id}/stream",
    status_code=204,
    response_class=Response,
    responses=problem_responses(stream_not_found=404),
)
async def delete_stream(
    source_id: SourceId,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("delete:sources"))],
) -> Response:
    """Deletes the source's stream: the streams service stops reading it within 2 s (a frame
    it sampled just before may still arrive). The source itself is not touched."""
    if not await svc.streams.delete(source_id):
        raise _not_found(source_id)
    await audit(request, "streams.delete", source_id)
    return Response(status_code=204)
