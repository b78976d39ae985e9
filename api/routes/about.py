"""What this deployment is and where its source is: the AGPL-3.0 offer to every user of the API."""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import metadata
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import services
from api.services import ApiServices
from api.source_archive import PROJECT, checkout_commit, source_archive

router = APIRouter(prefix="/api/v1/about", tags=["system"])
Services = Annotated[ApiServices, Depends(services)]
SOURCE_PATH = "/api/v1/about/source"


class About(BaseModel):
    name: str
    version: str
    commit: str | None
    licence: str
    source_url: str


@router.get("", response_model=About)
async def about(svc: Services) -> About:
    """Name, version, the commit it was built from (null when unknown), the licence and where to
    get the source of exactly this deployment."""
    version, licence, commit = await asyncio.to_thread(_identity)  # read once per process
    return About(
        name=PROJECT,
        version=version,
        commit=svc.settings.source_commit or commit,
        licence=licence,
        source_url=svc.settings.source_url or SOURCE_PATH,
    )


@cache
def _identity() -> tuple[str, str, str | None]:
    """(version, licence, checkout commit) of the running code: installed metadata and git
    don't change under a running process."""
    try:
        dist = metadata.distribution(PROJECT)
        version, licence = dist.version, dist.metadata.get("License-Expression") or "unknown"
    except metadata.PackageNotFoundError:  # running from a tree that was never installed
        version, licence = "unknown", "unknown"
    return version, licence, checkout_commit()


@router.get(
    "/source",
    response_class=Response,
    responses={200: {"content": {"application/gzip": {"schema": {"type": "string"}}}}},
)
async def source() -> Response:
    """The running code as a tar.gz (built once per process)."""
    return Response(
        await asyncio.to_thread(source_archive),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{PROJECT}-source.tar.gz"'},
    )
