"""The last-minute batch window a worker reports in its heartbeats."""

from __future__ import annotations

from core.pipeline.live import WINDOW_S, BatchWindow, LiveSettings


def test_window_keeps_one_minute_of_batches() -> None:
    window = BatchWindow()
    window.record(8, 100.0, now=0.0)
    window.record(2, 30.0, now=30.0)
    window.record(2, 40.0, now=50.0)
    summary = window.summary(now=55.0)
    assert summary["images_last_minute"] == 12
    assert summary["batch_sizes"] == {"2": 2, "8": 1}
    assert summary["batch_latency_ms_p50"] == 40.0
    assert summary["last_batch_size"] == 2
    later = window.summary(now=WINDOW_S + 10)  # the first batch has left the window
    assert later["images_last_minute"] == 4
    assert later["batch_sizes"] == {"2": 2}


def test_live_settings_start_running() -> None:
    live = LiveSettings(max_batch=4)
    assert live.running.is_set()
    assert live.confidence is None
