"""Fixtures shared by the integration tests: a provisioned deployment and a running worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from infra.provision import provision
from tests.integration.api_server import ApiServer, api_settings, start_api
from tests.integration.console_harness import browser  # noqa: F401 - the module-scoped Chromium
from tests.integration.workers import WorkerProcess


@pytest.fixture
def deployment(service_settings: Settings) -> Settings:
    """Topics, indexes and bucket of a fresh deployment."""
    asyncio.run(provision(service_settings))
    return service_settings


@pytest.fixture
def pipeline(deployment: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A provisioned deployment and one worker process running every stage."""
    worker = WorkerProcess(deployment, tmp_path, "worker")
    try:
        yield deployment
    finally:
        worker.stop()


@pytest.fixture
def api_deployment(deployment: Settings) -> Settings:
    return api_settings(deployment)


@pytest.fixture
def api(api_deployment: Settings) -> Iterator[ApiServer]:
    """The API on a loopback port (no worker behind it), with a user per role."""
    server = start_api(api_deployment)
    try:
        yield server
    finally:
        server.stop()
