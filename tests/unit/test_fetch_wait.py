"""A worker's fetches wait at most MUGPOS_FETCH_MAX_WAIT_MS at the broker, not Faust's 1.5 s."""

from __future__ import annotations

from pathlib import Path

from core.config import Settings
from streams.app import create_app


async def test_the_worker_consumer_takes_the_configured_fetch_wait(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", fetch_max_wait_ms=77)
    app = create_app(settings, datadir=tmp_path, web_port=6067)
    thread = app.consumer._thread
    consumer = thread._create_consumer(loop=None)  # built, never started: nothing is dialled
    try:
        assert consumer._fetch_max_wait_ms == 77
    finally:
        await consumer.stop()
