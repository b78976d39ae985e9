"""The hub completes waiters and feeds bounded subscriber queues."""

from __future__ import annotations

import asyncio

import orjson

from api.results_hub import SUBSCRIBER_QUEUE, ResultsHub


def _result(request_id: str, source: str = "cam") -> bytes:
    return orjson.dumps({"request_id": request_id, "source_id": source, "status": "ok"})


async def test_a_waiter_gets_its_result_and_only_its_own() -> None:
    hub = ResultsHub()
    with hub.waiting("a") as mine, hub.waiting("b") as other:
        await hub.on_result(b"a", _result("a"))
        assert (await asyncio.wait_for(mine, 1))["request_id"] == "a"
        assert not other.done()
        assert hub.pending_waiters == 1
    assert hub.pending_waiters == 0


async def test_subscribers_filter_by_source_and_drop_oldest_when_full() -> None:
    hub = ResultsHub()
    with hub.subscribe("cam-1") as one, hub.subscribe() as everything:
        await hub.on_result(b"x", _result("x", "cam-2"))
        await hub.on_result(b"y", _result("y", "cam-1"))
        assert one.queue.qsize() == 1
        assert (await one.queue.get())["data"]["request_id"] == "y"
        assert everything.queue.qsize() == 2
        for i in range(SUBSCRIBER_QUEUE + 5):
            hub.publish_event({"type": "tick", "data": i})
        assert everything.queue.qsize() == SUBSCRIBER_QUEUE
        assert everything.dropped == 7
        assert (await everything.queue.get())["data"] == 5
