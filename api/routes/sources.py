"""Sources: the cameras images come from, with their calibration, zones, rules and model; and the
state each one's frames have built up (tracked mugs, held verdicts).

Writes are versioned like rules (every PUT a new version, DELETE a tombstone version, history
kept) and announced to the workers, which apply them from the next batch on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import audit, require, services
from api.problems import Problem, problem_responses
from api.routes import JsonRoute
from api.services import ApiServices
from core.access import Principal
from core.sources import SourceSetupError, SourceSpec
from core.sources.spec import SOURCE_ID_PATTERN
from core.tracking import SourceState
from core.tracking.follow import held_report, track_report
from infra.sources_store import SourceNotFound, StoredSource
from schemas.messages import HeldOut, TrackOut

router = APIRouter(prefix="/api/v1/sources", tags=["sources"], route_class=JsonRoute)
Services = Annotated[ApiServices, Depends(services)]
SourceId = Annotated[str, Path(pattern=SOURCE_ID_PATTERN)]
Version = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


class SourceOut(BaseModel):
    source_id: str
    version: int
    created_at: str
    created_by: str
    deleted: bool = False
    source: SourceSpec


class SourceStateOut(BaseModel):
    source_id: str
    source_version: int | None = Field(description="The source's settings now; null: deleted.")
    frames: int = Field(description="Frames applied to the state so far.")
    frame_at: str | None = Field(description="Time of the newest frame applied.")
    updated_at: str | None
    tracks: list[TrackOut] = Field(
        description="Tracked mugs, seen or hidden; `mug` is null here (no picture to index)."
    )
    scene: dict[str, HeldOut] = Field(description="By rule id: held scene-wide outcomes.")


def _out(stored: StoredSource) -> SourceOut:
    return SourceOut(
        source_id=stored.source_id,
        version=stored.version,
        created_at=stored.created_at.isoformat(),
        created_by=stored.created_by,
        deleted=stored.deleted,
        source=stored.spec,
    )


def _unknown(exc: SourceNotFound) -> Problem:
    return Problem(404, str(exc), code="unknown_source")


async def _changed(svc: ApiServices, request: Request, action: str, stored: StoredSource) -> None:
    await svc.source_cache.publish_change(stored.source_id)
    svc.hub.publish_event(
        {
            "type": "sources.changed",
            "data": {"source_id": stored.source_id, "version": stored.version},
        }
    )
    await audit(request, action, f"{stored.source_id}@{stored.version}")


@router.get("", response_model=list[SourceOut])
async def list_sources(
    svc: Services, _: Annotated[Principal, Depends(require("read:sources"))]
) -> list[SourceOut]:
    """Every source as it is now (deleted ones left out)."""
    return [_out(s) for s in await svc.sources.latest()]


@router.get(
    "/{source_id}", response_model=SourceOut, responses=problem_responses(unknown_source=404)
)
async def get_source(
    source_id: SourceId,
    svc: Services,
    _: Annotated[Principal, Depends(require("read:sources"))],
    version: Version = None,
) -> SourceOut:
    try:
        return _out(await svc.sources.get(source_id, version))
    except SourceNotFound as exc:
        raise _unknown(exc) from None


@router.get(
    "/{source_id}/versions",
    response_model=list[SourceOut],
    responses=problem_responses(unknown_source=404),
)
async def source_versions(
    source_id: SourceId, svc: Services, _: Annotated[Principal, Depends(require("read:sources"))]
) -> list[SourceOut]:
    try:
        return [_out(s) for s in await svc.sources.history(source_id)]
    except SourceNotFound as exc:
        raise _unknown(exc) from None


@router.put(
    "/{source_id}",
    response_model=SourceOut,
    responses={201: {"model": SourceOut}, **problem_responses(source_invalid=422)},
)
async def put_source(
    source_id: SourceId,
    body: SourceSpec,
    request: Request,
    response: Response,
    svc: Services,
    who: Annotated[Principal, Depends(require("write:sources"))],
) -> SourceOut:
    """Creates the source (201) or stores a new version of it (200); workers apply it from
    their next batch. A calibration the analysis cannot use is refused (422 `source_invalid`)."""
    try:
        stored = await svc.sources.put(source_id, body, who.subject)
    except SourceSetupError as exc:
        raise Problem(422, str(exc), code="source_invalid") from None
    if stored.version == 1:
        response.status_code = 201
    await _changed(svc, request, "sources.put", stored)
    return _out(stored)


@router.delete(
    "/{source_id}", response_model=SourceOut, responses=problem_responses(unknown_source=404)
)
async def delete_source(
    source_id: SourceId,
    request: Request,
    svc: Services,
    who: Annotated[Principal, Depends(require("delete:sources"))],
) -> SourceOut:
    """Deletes the source (a tombstone version; history is kept). Its images are then judged
    alone with every rule, as for any unregistered source."""
    try:
        stored = await svc.sources.delete(source_id, who.subject)
    except SourceNotFound as exc:
        raise _unknown(exc) from None
    await _changed(svc, request, "sources.delete", stored)
    return _out(stored)


@router.get(
    "/{source_id}/state",
    response_model=SourceStateOut,
    responses=problem_responses(unknown_source=404),
)
async def source_state(
    source_id: SourceId, svc: Services, _: Annotated[Principal, Depends(require("read:sources"))]
) -> dict[str, Any]:
    """The source's tracked mugs and held verdicts after its newest frame."""
    try:
        version: int | None = (await svc.sources.get(source_id)).version
    except SourceNotFound:
        version = None
    doc = await svc.source_states.stored(source_id)
    if doc is None and version is None:
        raise Problem(404, f"no source {source_id}", code="unknown_source")
    state = SourceState.from_dict(doc["state"]) if doc else SourceState(source_id)
    now = state.frame_at or 0.0
    return {
        "source_id": source_id,
        "source_version": version,
        "frames": state.frames,
        "frame_at": _iso(state.frame_at),
        "updated_at": doc["updated_at"].isoformat() if doc else None,
        "tracks": track_report(state, {}, now),
        "scene": {rule_id: held_report(h, now) for rule_id, h in state.scene.items()},
    }


def _iso(seconds: float | None) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat() if seconds is not None else None
