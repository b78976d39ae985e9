"""The write-behind buffer batches, keeps items through a failing store, and writes what is left
at close."""

from __future__ import annotations

import asyncio

import pytest

from infra.write_behind import WriteBehind


class Store:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failing = False

    async def write(self, items: list[str]) -> None:
        if self.failing:
            raise ConnectionError("store down")
        self.batches.append(list(items))


async def test_items_arriving_together_are_written_in_one_batch() -> None:
    store = Store()
    buffer = WriteBehind("test", store.write, str, interval_s=0.02)
    for item in "abc":
        buffer.add(item)
    assert buffer.get("b") == "b"  # readable until written
    await asyncio.sleep(0.1)
    assert store.batches == [["a", "b", "c"]]
    assert len(buffer) == 0
    assert buffer.get("b") is None
    buffer.add("d")
    await asyncio.sleep(0.1)
    assert store.batches[-1] == ["d"]
    await buffer.close()


async def test_a_failing_store_keeps_the_items_and_they_are_written_when_it_is_back() -> None:
    store = Store()
    store.failing = True
    buffer = WriteBehind("test", store.write, str, interval_s=0.01)
    buffer.add("a")
    buffer.add("b")
    await asyncio.sleep(0.1)
    assert store.batches == []
    assert len(buffer) == 2
    assert buffer.failures >= 1
    store.failing = False
    await asyncio.sleep(0.8)  # the first backoff is 0.5 s
    assert store.batches == [["a", "b"]]
    assert len(buffer) == 0
    await buffer.close()


async def test_close_writes_what_is_buffered_and_refuses_more() -> None:
    store = Store()
    buffer = WriteBehind("test", store.write, str, interval_s=10)
    buffer.add("a")
    await buffer.close()
    assert store.batches == [["a"]]
    with pytest.raises(RuntimeError):
        buffer.add("b")


async def test_a_full_buffer_drops_the_oldest_items() -> None:
    store = Store()
    store.failing = True
    buffer = WriteBehind("test", store.write, str, interval_s=10, max_buffered=2)
    for item in "abc":
        buffer.add(item)
    assert (len(buffer), buffer.dropped, buffer.get("a")) == (2, 1, None)
    store.failing = False
    await buffer.close()
    assert store.batches == [["b", "c"]]
