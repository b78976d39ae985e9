"""Liveness, readiness of every dependency, and Prometheus metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import services
from api.services import ApiServices
from infra.health import check_all

router = APIRouter(tags=["system"])
Services = Annotated[ApiServices, Depends(services)]


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (liveness); says nothing about its dependencies."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "A dependency is not usable."}})
async def ready(svc: Services) -> JSONResponse:
    """Kafka, MongoDB, Redis and the object store, each checked now with a timeout. Redis is a
    cache (results, rules, rate limits fail open): without it the API is `degraded`, still ready."""
    checks = await check_all(svc.settings, timeout_s=3.0)
    ok = all(c.ok for c in checks if c.name != "redis")
    status = "not ready" if not ok else "ready" if all(c.ok for c in checks) else "degraded"
    body = {"status": status, "checks": [asdict(c) for c in checks]}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(svc: Services) -> Response:
    svc.metrics.observe_workers(svc.registry.view())
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
