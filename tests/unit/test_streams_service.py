"""The streams service's reconciliation (infra.capture.service) with the capture replaced: new
streams start, changed ones restart, deleted ones stop, a failed capture is reported in words
and started again, and health is written for the spec it describes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.capture import service as service_module
from infra.capture.service import StreamService
from infra.streams_store import StoredStream

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(source_id: str, url: str = "rtsp://u:pw@cam/1", at: datetime = T0) -> StoredStream:
    return StoredStream(source_id, url, 1.0, False, 2, "tcp", T0, at, "ann")


class FakeStore:
    def __init__(self) -> None:
        self.specs: dict[str, StoredStream] = {}
        self.health: list[tuple[str, datetime, dict[str, Any]]] = []
        self.down = False

    async def list(self) -> list[StoredStream]:
        if self.down:
            raise ConnectionError("mongodb is down")
        return list(self.specs.values())

    async def write_health(self, source_id: str, at: datetime, health: dict[str, Any]) -> bool:
        self.health.append((source_id, at, health))
        return True

    def last(self, source_id: str) -> dict[str, Any]:
        return [h for s, _, h in self.health if s == source_id][-1]


async def _until(check, what: str, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.01)


async def test_streams_start_restart_stop_and_fail_in_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts: list[tuple[str, str]] = []

    async def fake_run_source(producer, topic, spec, options, stats, stop) -> str:
        starts.append((stats.source_id, spec.location))
        if "broken" in spec.location:
            raise RuntimeError("secret internal detail")
        stats.state = "connected"
        stats.frame_read(asyncio.get_running_loop().time())
        stats.sent += 1
        await stop.wait()
        stats.state = "ended"
        return "stopped"

    monkeypatch.setattr(service_module, "run_source", fake_run_source)
    monkeypatch.setattr(service_module, "RESTART_AFTER_S", 0.2)
    monkeypatch.setattr(service_module, "STATE_CHECK_S", 0.01)
    store = FakeStore()
    store.specs["a"] = _spec("a")
    service = StreamService(store, None, "t", "host-1", poll_s=0.02, health_s=0.05)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))

    await _until(lambda: store.health and store.last("a")["state"] == "connected", "a connected")
    health = store.last("a")
    assert (health["sent"], health["error"], health["service_id"]) == (1, None, "host-1")
    assert health["last_frame_at"] is not None

    # Changed: restarted with the new spec; health written under the new spec's updated_at.
    t1 = T0 + timedelta(seconds=1)
    store.specs["a"] = replace(_spec("a", "rtsp://cam/2", at=t1))
    await _until(lambda: ("a", "rtsp://cam/2") in starts, "a restarted")
    await _until(lambda: any(s == "a" and at == t1 for s, at, _ in store.health), "new health")

    # A MongoDB outage keeps what runs.
    store.down = True
    await asyncio.sleep(0.1)
    assert service.unavailable.keys() == {"mongodb"}
    store.down = False
    await _until(lambda: not service.unavailable, "mongodb back")

    # A capture that fails: `failed`, in words (never the exception's text), started again.
    store.specs["b"] = _spec("b", "rtsp://cam/broken")
    await _until(lambda: any(s == "b" for s, _, _ in store.health), "b reported")
    await _until(lambda: store.last("b")["state"] == "failed", "b failed")
    assert "secret" not in store.last("b")["error"]
    assert "started again" in store.last("b")["error"]
    await _until(lambda: starts.count(("b", "rtsp://cam/broken")) >= 2, "b started again")

    # Deleted: stopped, and nothing more is written for it.
    del store.specs["b"]
    await asyncio.sleep(0.3)
    written = len([s for s, _, _ in store.health if s == "b"])
    await asyncio.sleep(0.2)
    assert len([s for s, _, _ in store.health if s == "b"]) == written

    stop.set()
    await asyncio.wait_for(running, 10)
    assert store.last("a")["state"] == "stopped"
    assert store.last("a")["error"] == "the streams service stopped"
