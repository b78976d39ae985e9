"""Aggregate repeated log records, so an outage costs a few lines per minute, not thousands.

While the broker is down, aiokafka's clients log an ERROR on every retry ("Unable connect to
node…", "Unable to update metadata…", "Failed fetch messages…"): ~150 lines a second from one
idle worker and ~4,000 from one with work in hand, enough to fill a disk and bury the rest. A
`RepeatThrottle` on a handler lets the first record of a kind through, counts and suppresses its
repeats, and writes one summary per window ("broker unreachable for 30 s, 1,234 retries") and one
when the repeats stop. Every client-to-broker connection error counts as one condition, whichever
client or loop reported it. Other records of Kafka/Faust loggers are keyed by logger, level and
message template; ours by logger, level and the whole message.

A filter on the handler (not on a logger) sees records propagated from every logger. One throttle
belongs to one handler and writes its summaries there. Records arrive from several threads (Faust
runs its consumer on a thread of its own), so the state is locked; a daemon thread ticks the
throttles so a summary appears even when the repeats stop and nothing else is logged.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

BROKER = "broker"
#: Loggers of the Kafka clients (aiokafka, and Faust's transport on top of it).
_CLIENT_LOGGERS = ("aiokafka", "faust.transport", "kafka")
#: Third-party loggers whose repeats are the same template with a changing detail (a port, an
#: offset, a duration). Our own records are repeats only when the whole message is the same: a
#: line per request id ("preprocess failed on r-7 (failure 2 of 3)") is information, not noise.
_BY_TEMPLATE = (*_CLIENT_LOGGERS, "faust", "mode")
#: What a client logs when it cannot reach a broker (seen with aiokafka 0.14 / Kafka 3.9). Not
#: GroupCoordinatorNotAvailable: a starting broker answers it while it loads its offsets.
_BROKER_ERROR = re.compile(
    r"Unable connect|Unable to update metadata|Unable to request metadata|Unable to bootstrap"
    r"|Connect call failed|NodeNotReadyError|KafkaConnectionError|coordinator dead"
    r"|RequestTimedOutError|Connection at .* closed",
    re.IGNORECASE,
)
_SUMMARY = "throttle_summary"  # attribute marking our own records, which always pass


def condition_key(record: logging.LogRecord) -> tuple[str, ...]:
    """Which repeats `record` belongs to: the broker condition, else logger + level + template
    (Kafka/Faust loggers) or logger + level + message (everything else)."""
    if not record.name.startswith(_BY_TEMPLATE):
        return (record.name, str(record.levelno), record.getMessage())
    if (
        record.levelno >= logging.WARNING
        and record.name.startswith(_CLIENT_LOGGERS)
        and _BROKER_ERROR.search(record.getMessage())
    ):
        return (BROKER,)
    return (record.name, str(record.levelno), str(record.msg))


@dataclass
class _Repeats:
    """One condition: when it began, when it was last seen, what was held back since when."""

    first_at: float
    last_at: float
    window_at: float
    name: str
    last_message: str
    suppressed: int = 0  # since the last summary
    total: int = 0  # repeats since the first record, all summarised or not
    levels: set[int] = field(default_factory=set)
    announced: bool = False  # the broker condition says once that it is being summarised


class RepeatThrottle(logging.Filter):
    """Let the first record of a kind through; count repeats; summarise each `window_s` and once
    the repeats have stopped for `quiet_s`."""

    def __init__(
        self,
        handler: logging.Handler,
        *,
        window_s: float = 30.0,
        quiet_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.window_s = window_s
        self.quiet_s = quiet_s
        self.clock = clock
        self._lock = threading.Lock()
        self._repeats: dict[tuple[str, ...], _Repeats] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        key = condition_key(record)
        now = self.clock()
        with self._lock:
            repeats = self._repeats.get(key)
            if repeats is None:
                self._repeats[key] = _Repeats(
                    first_at=now,
                    last_at=now,
                    window_at=now,
                    name=record.name,
                    last_message=record.getMessage(),
                    levels={record.levelno},
                )
                return True
            repeats.last_at = now
            repeats.suppressed += 1
            repeats.total += 1
            repeats.levels.add(record.levelno)
            repeats.last_message = record.getMessage()
        return False

    def tick(self) -> list[logging.LogRecord]:
        """Emit the summaries that are due to the handler; returns them (for tests)."""
        due = self._due(self.clock())
        for record in due:
            if record.levelno >= self.handler.level:
                self.handler.handle(record)
        return due

    def _due(self, now: float) -> list[logging.LogRecord]:
        due: list[logging.LogRecord] = []
        with self._lock:
            for key, repeats in list(self._repeats.items()):
                if key == (BROKER,) and repeats.total and not repeats.announced:
                    repeats.announced = True
                    due.append(self._announce(repeats))
                if now - repeats.last_at >= self.quiet_s:
                    del self._repeats[key]
                    if ended := _ended(key, repeats):
                        due.append(ended)
                elif repeats.suppressed and now - repeats.window_at >= self.window_s:
                    due.append(_ongoing(key, repeats, now))
                    repeats.suppressed = 0
                    repeats.window_at = now
        return due

    def _announce(self, repeats: _Repeats) -> logging.LogRecord:
        return _record(
            repeats.name,
            max(repeats.levels),
            "broker unreachable (%s): the Kafka clients keep retrying with backoff; their errors "
            "are counted and summarised every %.0f s, and once more when they stop",
            (repeats.last_message, self.window_s),
        )


def _ongoing(key: tuple[str, ...], repeats: _Repeats, now: float) -> logging.LogRecord:
    level = max(repeats.levels)
    if key == (BROKER,):
        return _record(
            repeats.name,
            level,
            "broker unreachable for %.0f s, %s retries (last: %s)",
            (repeats.last_at - repeats.first_at, f"{repeats.total:,}", repeats.last_message),
        )
    return _record(
        repeats.name,
        level,
        "%s (repeated %s times in the last %.0f s)",
        (repeats.last_message, f"{repeats.suppressed:,}", now - repeats.window_at),
    )


def _ended(key: tuple[str, ...], repeats: _Repeats) -> logging.LogRecord | None:
    """The condition has cleared: no repeat for `quiet_s`. The broker's end is said at WARNING,
    so it shows next to the errors it ends even when a handler hides INFO; a plain repeat only
    when some were held back since its last line."""
    lasted = repeats.last_at - repeats.first_at
    if key == (BROKER,) and repeats.total:
        return _record(
            repeats.name,
            logging.WARNING,
            "broker errors stopped after %.0f s, %s retries in all",
            (lasted, f"{repeats.total:,}"),
        )
    if not repeats.suppressed:
        return None
    return _record(
        repeats.name,
        max(repeats.levels),
        "%s (repeated %s more times over %.0f s, then stopped)",
        (repeats.last_message, f"{repeats.suppressed:,}", repeats.last_at - repeats.window_at),
    )


def _record(name: str, level: int, msg: str, args: tuple) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 0, msg, args, None)
    setattr(record, _SUMMARY, True)
    return record


class _Ticker:
    """One daemon thread per process that ticks every live throttle once per `interval_s`."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._throttles: weakref.WeakSet[RepeatThrottle] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, throttle: RepeatThrottle) -> None:
        with self._lock:
            self._throttles.add(throttle)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-throttle", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            with self._lock:
                throttles = list(self._throttles)
            for throttle in throttles:
                # A broken handler must not end the ticking for the others.
                with contextlib.suppress(Exception):
                    throttle.tick()


_ticker = _Ticker()


def throttle_handlers(
    handlers: Iterable[logging.Handler], *, window_s: float = 30.0, quiet_s: float = 5.0
) -> list[RepeatThrottle]:
    """Give each handler a throttle of its own (once: a second call changes nothing)."""
    added = []
    for handler in handlers:
        if any(isinstance(f, RepeatThrottle) for f in handler.filters):
            continue
        throttle = RepeatThrottle(handler, window_s=window_s, quiet_s=quiet_s)
        handler.addFilter(throttle)
        _ticker.add(throttle)
        added.append(throttle)
    return added
