"""The FastAPI application: `uvicorn api.main:app` or `mugpos api`.

Settings are read when the app starts (not on import), so importing this module is side-effect
free; `create_app(settings)` builds one for tests and the embedded demo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from api import problems
from api.routes import analyze, auth, dashboard, live, rules, servers, system
from api.services import ApiServices
from core.config import Settings, load_settings

TITLE = "H200 Intelligent Mug Positioning System"
access_log = logging.getLogger("mugpos.access")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = ApiServices.open(settings)
        await svc.start()
        app.state.services = svc
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title=TITLE,
        version="1.0.0",
        description="Submit images of desks, get mug positioning facts and rule verdicts.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    problems.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )

    @app.middleware("http")
    async def observe(request: Request, call_next) -> Response:
        """Body-size guard, metrics by route template, and a JSON access log without secrets."""
        started = time.perf_counter()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.api_max_request_bytes:
            response: Response = problems.problem_response(
                request,
                413,
                f"request body over {settings.api_max_request_bytes} bytes",
                code="request_too_large",
            )
        else:
            response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        svc: ApiServices | None = getattr(request.app.state, "services", None)
        if svc is not None:
            svc.metrics.http_requests.labels(request.method, endpoint, response.status_code).inc()
            svc.metrics.http_duration.labels(request.method, endpoint).observe(elapsed)
        principal = getattr(request.state, "principal", None)
        access_log.info(
            orjson.dumps(
                {
                    "method": request.method,
                    "path": request.url.path,  # never the query string: it may hold a token
                    "endpoint": endpoint,
                    "status": response.status_code,
                    "ms": round(elapsed * 1000, 2),
                    "ip": request.client.host if request.client else None,
                    "user": principal.subject if principal else None,
                }
            ).decode()
        )
        return response

    for module in (system, auth, analyze, rules, dashboard, servers, live):
        app.include_router(module.router)
    return app


def __getattr__(name: str) -> FastAPI:
    """`api.main:app` for uvicorn, built on first access from the environment's settings."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
