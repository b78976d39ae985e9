"""The live socket's per-source throttle: the latest result per source per interval."""

from __future__ import annotations

from api.live_throttle import LatestPerSource


def _result(source: str | None, n: int) -> dict:
    return {"type": "result", "data": {"source_id": source, "request_id": f"r{n}"}}


def test_the_first_result_of_a_source_goes_at_once_and_a_burst_collapses_to_its_latest() -> None:
    throttle = LatestPerSource(1.0)
    assert throttle.offer(_result("cam-1", 1), now=0.0) == [_result("cam-1", 1)]
    for n in range(2, 12):  # ten more within the interval: held, each replacing the last
        assert throttle.offer(_result("cam-1", n), now=0.05 * n) == []
    assert throttle.next_due() == 1.0
    assert throttle.due(now=0.9) == []
    (latest,) = throttle.due(now=1.0)
    assert latest["data"]["request_id"] == "r11"
    assert latest["coalesced"] == 10
    assert throttle.next_due() is None
    # The interval counts from that send: one more right after it is held again.
    assert throttle.offer(_result("cam-1", 12), now=1.2) == []
    assert throttle.next_due() == 2.0


def test_sources_are_throttled_apart_and_uploads_and_other_events_never_wait() -> None:
    throttle = LatestPerSource(1.0)
    assert throttle.offer(_result("cam-1", 1), now=0.0)
    assert throttle.offer(_result("cam-2", 2), now=0.1)  # another source: its own interval
    for unnamed in (None, "api", "cli"):
        upload = _result(unnamed, 3)
        assert throttle.offer(upload, now=0.2) == [upload]
        assert throttle.offer(upload, now=0.3) == [upload]
    event = {"type": "worker", "data": {"worker_id": "w1"}}
    assert throttle.offer(event, now=0.4) == [event]
    assert throttle.offer(_result("cam-1", 4), now=1.5) == [_result("cam-1", 4)]  # interval over
