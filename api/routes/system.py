"""Liveness, readiness of every dependency, and Prometheus metrics.

Both readiness details (the Kafka cluster id, hosts, versions) and metrics (worker ids, costs)
describe the deployment to whoever asks: anonymous callers get the readiness verdict only, and
`/metrics` asks for MUGPOS_METRICS_TOKEN as a bearer token when one is set."""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.deps import check_rate, identify, services
from api.metrics import LAG_TIMEOUT_S
from api.problems import Problem, problem_responses
from api.services import ApiServices
from core.access import allowed
from infra.health import check_all

log = logging.getLogger(__name__)
router = APIRouter(tags=["system"])
Services = Annotated[ApiServices, Depends(services)]
# The same schemes as api.deps (same names and descriptions: one entry each in the OpenAPI spec).
Bearer = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token.")),
]
ApiKey = Annotated[
    str | None,
    Depends(
        APIKeyHeader(name="X-API-Key", auto_error=False, description="A machine client's key.")
    ),
]
MetricsBearer = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(
        HTTPBearer(
            auto_error=False,
            scheme_name="MetricsToken",
            description="MUGPOS_METRICS_TOKEN, when the deployment sets one.",
        )
    ),
]
DETAIL_PERMISSION = "read:servers"  # who operates the deployment: managers and admins
# Credentials are optional here: `{}` among the requirements says anonymous callers are served.
ANONYMOUS_TOO = {"security": [{}]}


class ComponentCheck(BaseModel):
    name: str
    ok: bool
    detail: str
    latency_ms: float


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not ready"]
    checks: list[ComponentCheck] | None = None


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (liveness); says nothing about its dependencies."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={
        503: {"description": "A dependency is not usable.", "model": Readiness},
        **problem_responses(bad_token=401, bad_api_key=401, account_disabled=401, rate_limited=429),
    },
    openapi_extra=ANONYMOUS_TOO,
)
async def ready(request: Request, svc: Services, bearer: Bearer, api_key: ApiKey) -> JSONResponse:
    """Kafka, MongoDB, Redis and the object store, each checked now with a timeout. Redis is a
    cache (results, rules, rate limits fail open): without it the API is `degraded`, still ready.
    The checks themselves are shown to managers and admins only."""
    detailed = await _may_see_detail(request, svc, bearer, api_key)
    checks = await check_all(svc.settings, timeout_s=3.0)
    ok = all(c.ok for c in checks if c.name != "redis")
    status = "not ready" if not ok else "ready" if all(c.ok for c in checks) else "degraded"
    body: dict[str, object] = {"status": status}
    if detailed:
        body["checks"] = [asdict(c) for c in checks]
    return JSONResponse(body, status_code=200 if ok else 503)


async def _may_see_detail(
    request: Request, svc: ApiServices, bearer: HTTPAuthorizationCredentials | None, key: str | None
) -> bool:
    """Whether the caller operates the deployment; no credentials is an anonymous probe, bad
    ones are refused as on any route."""
    if bearer is None and not key:
        return False
    principal = await identify(svc, request, bearer, key)
    return allowed(principal.role, DETAIL_PERMISSION)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **problem_responses(metrics_token_required=401, rate_limited=429),
    },
    openapi_extra=ANONYMOUS_TOO,
)
async def metrics(request: Request, svc: Services, bearer: MetricsBearer) -> Response:
    expected = svc.settings.metrics_token
    if expected is not None and not (
        bearer is not None
        and hmac.compare_digest(bearer.credentials.encode(), expected.get_secret_value().encode())
    ):
        await check_rate(svc, request, None)  # guesses of the token count against the IP
        raise Problem(
            401,
            "metrics need the bearer token configured in MUGPOS_METRICS_TOKEN",
            code="metrics_token_required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    svc.metrics.observe_workers(svc.registry.view())
    try:  # Kafka's view, not a worker's: there when no worker runs (bounded: a scrape must answer)
        lags = await asyncio.wait_for(svc.pipeline_lag(), LAG_TIMEOUT_S)
    except Exception as exc:
        log.warning("consumer lag not read for /metrics: %s: %s", type(exc).__name__, exc)
        lags = None
    svc.metrics.observe_lag(lags, svc.topics.pipeline_group)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
