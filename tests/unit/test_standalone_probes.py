"""A standalone service's shell (agents.probes.standalone): the probe endpoint reports the state
the service sets, and leaving the shell reports nothing more (the endpoint is gone)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agents.probes import standalone
from core.config import Settings
from infra.launchers import free_port


async def test_readyz_follows_the_state_and_the_endpoint_goes_with_the_shell() -> None:
    port = free_port()
    settings = Settings(_env_file=None, worker_http_host="127.0.0.1", worker_http_port=port)
    url = f"http://127.0.0.1:{port}/readyz"
    down = {"mongodb": 3.0}
    async with httpx.AsyncClient() as http:
        async with standalone(settings, asyncio.Event(), lambda: down) as shell:
            starting = await http.get(url)
            assert (starting.status_code, starting.json()["state"]) == (503, "starting")
            shell.state = "running"
            running = await http.get(url)
            assert running.status_code == 200
            assert running.json() == {"state": "running", "unavailable": down}
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        assert shell.state == "stopping"
        with pytest.raises(httpx.ConnectError):
            await http.get(url)


async def test_without_a_port_there_is_no_endpoint_and_a_given_stop_is_kept() -> None:
    stop = asyncio.Event()
    async with standalone(Settings(_env_file=None), stop, dict) as shell:
        assert shell.stop is stop
        assert shell.state == "starting"
