"""The FastAPI application: `uvicorn api.main:app` or `mugpos api`.

Settings are read when the app starts (not on import), so importing this module is side-effect
free; `create_app(settings)` builds one for tests and the embedded demo.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import problems
from api.body_limit import BodyLimit
from api.observe import Observe
from api.routes import (
    about,
    analyze,
    auth,
    console,
    dashboard,
    docs,
    live,
    rules,
    servers,
    sources,
    streams,
    system,
    webhooks,
)
from api.services import ApiServices
from core.config import Settings, load_settings
from infra import tracing

TITLE = "H200 Intelligent Mug Positioning System"
# The route modules, in the order the document lists them.
AREAS = (system, about, auth, analyze, rules, sources, streams, webhooks, dashboard, servers, live)


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
            tracing.flush()

    app = FastAPI(
        title=TITLE,
        version="1.0.0",
        description="Submit images of desks, get mug positioning facts and rule verdicts.",
        docs_url=None,  # api.routes.docs serves /api/docs from local assets
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

    # Inside Observe, so that a refused body is counted and logged like any answer.
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_request_bytes)
    app.add_middleware(Observe)
    # Each request's server span (MUGPOS_OTEL_*): an upload's is the parent of its Kafka message.
    if tracing.setup(settings, tracing.SERVICE_API):
        tracing.instrument_app(app)

    for module in AREAS:
        problems.document(module.router)
        app.include_router(module.router)
    docs.install(app)

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the `Problem` schema the error answers refer to and this
        deployment's own limits (a client generated from it then sends nothing the API refuses
        for a reason the document does not state)."""
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                problems.openapi_components()
            )
            analyze.document_limits(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign] - FastAPI's documented way to extend it
    console.install(app)
    return app


def __getattr__(name: str) -> FastAPI:
    """`api.main:app` for uvicorn, built on first access from the environment's settings."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
