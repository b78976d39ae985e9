"""Repeated log records are counted, held back and summarised (infra.log_throttle)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from infra.log_throttle import RepeatThrottle, condition_key, throttle_handlers


class Lines(logging.Handler):
    """A real handler that keeps what it writes, formatted."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handler() -> Lines:
    return Lines()


@pytest.fixture
def throttle(handler: Lines, clock: Clock) -> RepeatThrottle:
    throttle = RepeatThrottle(handler, window_s=30, quiet_s=5, clock=clock)
    handler.addFilter(throttle)
    return throttle


def refused(port: int = 45751) -> list[logging.LogRecord]:
    """What one round of aiokafka retries logs while the broker is down (aiokafka 0.14)."""
    return [
        record(
            "aiokafka",
            "Unable connect to node with id %s: %s",
            1,
            f"[Errno 111] Connect call failed ('127.0.0.1', {port})",
        ),
        record("aiokafka", "Unable to update metadata from %s", [1]),
        record(
            "aiokafka.consumer.fetcher",
            "Failed fetch messages from %s: %s",
            1,
            "NodeNotReadyError: Attempt to send a request to node which is not ready (node id 1).",
        ),
        record(
            "aiokafka.producer.sender",
            "Got error produce response: %s",
            "NodeNotReadyError: Attempt to send a request to node which is not ready (node id 1).",
            level=logging.WARNING,
        ),
    ]


def test_the_first_passes_repeats_are_counted_and_summarised_per_window(
    handler: Lines, throttle: RepeatThrottle, clock: Clock
) -> None:
    for _ in range(100):
        handler.handle(record("faust.timers", "Timer %s is overlapping", "commit"))
        clock.now += 0.1
    assert handler.lines == ["ERROR faust.timers: Timer commit is overlapping"]
    assert throttle.tick() == []  # 10 s: neither the window nor the quiet time is over
    for _ in range(200):
        handler.handle(record("faust.timers", "Timer %s is overlapping", "commit"))
        clock.now += 0.1
    throttle.tick()  # 30 s after the first
    assert handler.lines[1:] == [
        "ERROR faust.timers: Timer commit is overlapping (repeated 299 times in the last 30 s)"
    ]
    handler.handle(record("faust.timers", "Timer %s is overlapping", "commit"))
    clock.now += 6
    throttle.tick()  # no repeat for 5 s: the condition has cleared
    assert handler.lines[2:] == [
        "ERROR faust.timers: Timer commit is overlapping (repeated 1 more times over 0 s, "
        "then stopped)"
    ]
    handler.handle(record("faust.timers", "Timer %s is overlapping", "commit"))
    assert handler.lines[3:] == ["ERROR faust.timers: Timer commit is overlapping"]


def test_every_client_connection_error_is_one_broker_condition(
    handler: Lines, throttle: RepeatThrottle, clock: Clock
) -> None:
    for second in range(45):
        for _ in range(10):  # 40 records a second, from four loops of three clients
            for each in refused():
                handler.handle(each)
        clock.now += 1
        throttle.tick()
        if second == 0:
            assert len(handler.lines) == 2, handler.lines
    clock.now += 5
    throttle.tick()
    assert handler.lines == [
        "ERROR aiokafka: Unable connect to node with id 1: [Errno 111] Connect call failed "
        "('127.0.0.1', 45751)",
        "ERROR aiokafka: broker unreachable (Got error produce response: NodeNotReadyError: "
        "Attempt to send a request to node which is not ready (node id 1).): the Kafka clients "
        "keep retrying with backoff; their errors are counted and summarised every 30 s, and "
        "once more when they stop",
        "ERROR aiokafka: broker unreachable for 29 s, 1,199 retries (last: Got error produce "
        "response: NodeNotReadyError: Attempt to send a request to node which is not ready "
        "(node id 1).)",
        "WARNING aiokafka: broker errors stopped after 44 s, 1,799 retries in all",
    ]


def test_other_records_of_the_client_are_keyed_by_template(handler: Lines) -> None:
    assert condition_key(refused(1)[0]) == condition_key(refused(2)[0]) == ("broker",)
    # Not a connection error: a template of its own, whatever partition it names.
    moved = "Got error produce response on topic-partition %s, retrying. Error: %s"
    first = record("aiokafka.producer.sender", moved, "images-0", "NotLeaderForPartitionError")
    second = record("aiokafka.producer.sender", moved, "images-1", "NotLeaderForPartitionError")
    assert condition_key(first) == condition_key(second) != ("broker",)
    # A starting broker answers this while it loads its offsets: not an outage.
    loading = record(
        "aiokafka",
        "Group Coordinator Request failed: %s",
        "[Error 15] GroupCoordinatorNotAvailableError",
    )
    assert condition_key(loading) != ("broker",)
    # Below WARNING nothing is a broker error.
    quiet = record("aiokafka", "Unable connect to node with id %s", 1, level=logging.INFO)
    assert condition_key(quiet) != ("broker",)


def test_our_own_records_repeat_only_when_the_whole_message_does(
    handler: Lines, throttle: RepeatThrottle
) -> None:
    template = "preprocess failed on %s (failure %d of 3)"
    for attempt in (1, 2, 3):
        handler.handle(record("agents.stages", template, "r-7", attempt, level=logging.WARNING))
    handler.handle(record("agents.control", "heartbeat failed: %s", "timed out"))
    handler.handle(record("agents.control", "heartbeat failed: %s", "timed out"))
    assert handler.lines == [
        "WARNING agents.stages: preprocess failed on r-7 (failure 1 of 3)",
        "WARNING agents.stages: preprocess failed on r-7 (failure 2 of 3)",
        "WARNING agents.stages: preprocess failed on r-7 (failure 3 of 3)",
        "ERROR agents.control: heartbeat failed: timed out",
    ]


def test_a_summary_is_written_only_at_or_above_the_handler_level(clock: Clock) -> None:
    handler = Lines(level=logging.ERROR)
    throttle = RepeatThrottle(handler, window_s=30, quiet_s=5, clock=clock)
    handler.addFilter(throttle)
    for each in refused() * 3:
        if each.levelno >= handler.level:  # what Logger.callHandlers checks before handle()
            handler.handle(each)
    clock.now += 6
    due = throttle.tick()
    assert [r.levelno for r in due] == [logging.ERROR, logging.WARNING]  # announced, stopped
    assert len(handler.lines) == 2  # the first error and the announcement; not the WARNING


def test_records_from_many_threads_are_all_counted(
    handler: Lines, throttle: RepeatThrottle, clock: Clock
) -> None:
    def hammer() -> None:
        for _ in range(500):
            handler.handle(record("aiokafka", "Unable to update metadata from %s", [1]))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    clock.now += 6
    throttle.tick()
    assert (
        handler.lines[-1]
        == "WARNING aiokafka: broker errors stopped after 0 s, 3,999 retries in all"
    )


def test_throttled_handlers_summarise_on_their_own_once_repeats_stop() -> None:
    """End to end through a real logger; the process's ticker thread writes the summary."""
    handler = Lines()
    log = logging.getLogger("aiokafka.test_log_throttle")
    log.propagate = False
    log.addHandler(handler)
    try:
        (throttle,) = throttle_handlers([handler], window_s=30, quiet_s=0.5)
        assert throttle_handlers([handler]) == []  # once per handler
        for _ in range(50):
            log.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
        deadline = time.monotonic() + 10
        while len(handler.lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        log.removeHandler(handler)
        handler.removeFilter(throttle)
    assert handler.lines[0].startswith("ERROR aiokafka.test_log_throttle: Unable connect")
    assert (
        "broker unreachable (Unable connect to node with id 1: Connect call failed): the "
        in (handler.lines[1])
    )
    assert handler.lines[2].endswith("broker errors stopped after 0 s, 49 retries in all")
