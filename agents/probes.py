"""The worker's HTTP endpoint (MUGPOS_WORKER_HTTP_PORT): liveness and readiness for an
orchestrator's probes, and the worker's own Prometheus metrics.

- `/healthz`: the process and its event loop answer (liveness; a blocked loop fails it).
- `/readyz`: 200 while the worker consumes or an operator paused it; 503 while it starts, drains,
  stops, or is `degraded` (a dependency is down and its inputs are being rewound), naming the
  unavailable dependencies — the state its heartbeats report (agents.control).
- `/metrics`: the process's default Prometheus registry (model load, batches, inference time).

It runs on the worker's own event loop (aiohttp, already under Faust), so it answers exactly when
the pipeline's loop does. The services outside Faust (webhooks, streams) get the same endpoint and
their signal handling from `standalone`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from core.config import Settings

READY_STATES = frozenset({"running", "paused"})


def probe_app(
    state: Callable[[], str], unavailable: Callable[[], dict[str, float]]
) -> web.Application:
    """The three routes over the worker's reported state and its unavailable dependencies."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        current = state()
        body = {"state": current, "unavailable": unavailable()}
        return web.json_response(body, status=200 if current in READY_STATES else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen on host:port; the caller cleans the returned runner up on shutdown."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


@dataclass
class Standalone:
    """What a service outside Faust (webhooks, streams) reports: `state` for `/readyz`, and
    `stop`, set on SIGTERM/SIGINT, which its loop watches."""

    stop: asyncio.Event
    state: str = "starting"


@contextlib.asynccontextmanager
async def standalone(
    settings: Settings, stop: asyncio.Event | None, unavailable: Callable[[], dict[str, float]]
) -> AsyncIterator[Standalone]:
    """The signal handlers (unless the caller brings its own `stop`, as tests do) and the probe
    endpoint (on MUGPOS_WORKER_HTTP_PORT, when set) of a standalone service. Leaving it reports
    `stopping` and closes the endpoint, after whatever the service closed inside it."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    shell = Standalone(stop)
    runner = None
    if settings.worker_http_port is not None:
        app = probe_app(lambda: shell.state, unavailable)
        runner = await serve(app, settings.worker_http_host, settings.worker_http_port)
    try:
        yield shell
    finally:
        shell.state = "stopping"
        if runner is not None:
            await runner.cleanup()
