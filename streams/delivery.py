"""Acknowledge an input only once its outcome is durable; when a dependency is down, rewind.

Faust acknowledges an event when its agent moves past it, also when the agent failed on it, and
commits the highest run of acknowledged offsets (its check for a gap at the head of that run lets
one missing offset through). So the stages keep a reference of their own on every message they
take (`Message.incref`): Faust's acknowledgement then only drops its reference, and an offset
becomes committable when a `Delivery` drops ours, which it does strictly in offset order per
partition once the input's outcome (its published output, or a dead letter with its result) is
durable.

When a dependency is unavailable the inputs in hand are neither held (a held message freezes every
rebalance, see platform-notes) nor dead-lettered: the stage's partitions are paused, the failing
ones rewound to their oldest input not yet done, and all resumed after a capped, jittered
exponential backoff, as quix-streams' checkpointing does. Copies of rewound inputs that were
fetched before the rewind are dropped until the partition's refetch starts.

A failure with no dependency to blame is counted per input in MongoDB; that input is retried after
a short backoff, and after `max_attempts` failures the stage's `on_poison` turns it into a dead
letter, so one bad input never stalls its partition. A failure that leaves the process unusable
(out of memory, a sticky CUDA error) stops the worker without acknowledging what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import faust
from faust.types import TP

from core import worker_metrics as metrics
from core.pipeline.health import DependencyHealth
from infra.attempts import FailureCounter, attempt_key
from infra.failures import is_fatal, unavailable_dependency

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # failures of one input, with no dependency to blame, before it is dead-lettered
LETTER_ATTEMPTS = 3  # further failures to dead-letter it before the partition moves on anyway
REFETCH_CHECK_S = 3.0  # how long a rewound partition may show nothing before it is sought again


@dataclass(eq=False)
class Ticket:
    """One input in hand: released (acknowledged) when done, forgotten when rewound."""

    event: faust.EventT
    tp: TP
    offset: int
    done: bool = False
    abandoned: bool = False

    @property
    def message(self) -> faust.types.Message:
        return self.event.message


StageFn = Callable[[list[Ticket]], Awaitable[None]]
PoisonFn = Callable[[Ticket, BaseException, int], Awaitable[None]]


class Backoff:
    """Capped exponential delays with jitter, so recovering workers do not retry in step."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 10.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap_s, self.first_s * 2**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    def reset(self) -> None:
        self.failures = 0


class Delivery:
    """The acknowledgement ledger and failure handling of one stage's input topic."""

    def __init__(
        self,
        app: faust.App,
        stage: str,
        topic: str,
        health: DependencyHealth,
        failures: FailureCounter,
        on_poison: PoisonFn,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        backoff: Backoff | None = None,
    ) -> None:
        self._app = app
        self.stage = stage
        self.topic = topic
        self._health = health
        self._failures = failures
        self._on_poison = on_poison
        self.max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._pending: dict[TP, dict[int, Ticket]] = defaultdict(dict)
        self._expect: dict[TP, int] = {}
        self._paused: set[TP] = set()
        self._seeks: dict[TP, asyncio.Future] = {}
        self._resumer: asyncio.Task | None = None
        self._closed: tuple[int, set[TP]] = (-1, set())  # (generation, partitions being revoked)
        self._down: str | None = None
        self.rewinds = 0
        self.poisoned = 0

    # --- intake -------------------------------------------------------------------------------
    def admit(self, event: faust.EventT) -> Ticket | None:
        """Take an event into the ledger, or None for a stale copy (of a rewound input, or from
        before a rebalance)."""
        message = event.message
        message.incref()  # ours: only `_release` acknowledges, whatever Faust does
        if message.generation_id != self._app.consumer_generation_id:
            # Fetched before a rebalance and left in a batch buffer: the partition's owner now
            # reads it again from the committed offset (processing this copy would redo it).
            return None
        # Faust's own TP type (message.tp may be aiokafka's): it goes into pause/resume sets.
        tp, offset = TP(message.topic, message.partition), message.offset
        generation, closing = self._closed
        if tp in closing and generation == message.generation_id:
            return None  # being revoked: the next owner reads it from the committed offset
        expected = self._expect.get(tp)
        if expected is not None:
            if offset != expected:
                # Fetched before the rewind. Faust marked it read when it queued it, which can
                # be after our seek (its fetcher waits on a full queue): then it would drop the
                # refetch as already read, so seek again until the refetch starts.
                self._seek_again(tp)
                return None
            del self._expect[tp]
        ticket = Ticket(event, tp, offset)
        self._pending[tp][offset] = ticket
        return ticket

    def put_back(self, tickets: Sequence[Ticket]) -> None:
        """Not processed (the worker is stopping): left for the partitions' next owner. They stay
        in the ledger, undone, so nothing after them on their partition is acknowledged."""
        for ticket in tickets:
            ticket.abandoned = True

    @property
    def in_flight(self) -> int:
        return sum(len(p) for p in self._pending.values())

    # --- outcome ------------------------------------------------------------------------------
    async def process(self, tickets: Sequence[Ticket], fn: StageFn) -> None:
        """Run the stage on `tickets`; whatever happens, no exception reaches Faust."""
        live = [t for t in tickets if not t.abandoned]
        if not live:
            return
        try:
            await fn(live)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(live, fn, exc)
        else:
            self._succeeded(live)

    def _succeeded(self, tickets: Sequence[Ticket]) -> None:
        for ticket in tickets:
            if not ticket.abandoned:
                ticket.done = True
        for tp in {t.tp for t in tickets}:
            self._release(tp)
        if self._down is not None:
            log.warning("%s: %s is back; processing resumed", self.stage, self._down)
            self._health.up(self.stage)
            self._down = None
            self._backoff.reset()

    def _release(self, tp: TP) -> None:
        """Acknowledge the done inputs at the head of the partition, in offset order."""
        pending = self._pending[tp]
        consumer = self._app.consumer
        for offset in sorted(pending):
            ticket = pending[offset]
            if not ticket.done:
                break
            del pending[offset]
            ticket.message.ack(consumer)

    async def _failed(self, tickets: list[Ticket], fn: StageFn, exc: Exception) -> None:
        if is_fatal(exc):
            log.critical("%s: the worker cannot go on; stopping", self.stage, exc_info=exc)
            await self._app.crash(exc)
            return
        dependency = unavailable_dependency(exc)
        if dependency is not None:
            await self._rewind(tickets, dependency, exc)
        elif len(tickets) > 1:  # find the input at fault: the others go through on their own
            for ticket in tickets:
                await self.process([ticket], fn)
        else:
            await self._poisoned(tickets[0], exc)

    async def _poisoned(self, ticket: Ticket, exc: Exception) -> None:
        key = attempt_key(self.stage, ticket.tp.topic, ticket.tp.partition, ticket.offset)
        try:
            failures = await self._failures.record(key, type(exc).__name__)
        except Exception as count_exc:
            await self._rewind([ticket], unavailable_dependency(count_exc) or "mongodb", count_exc)
            return
        log.error(
            "%s failed on %s:%d@%d (failure %d of %d)",
            self.stage,
            ticket.tp.topic,
            ticket.tp.partition,
            ticket.offset,
            failures,
            self.max_attempts,
            exc_info=exc,
        )
        if failures < self.max_attempts:
            await self._rewind([ticket], None, exc)
            return
        try:
            await self._on_poison(ticket, exc, failures)
        except Exception as letter_exc:  # the dead letter needs the same dependencies
            dependency = unavailable_dependency(letter_exc)
            if dependency is None and failures >= self.max_attempts + LETTER_ATTEMPTS:
                # Its dead letter is published first (agents.stages.reject); what keeps failing
                # is storing its result. Holding the partition for ever would lose more.
                log.critical(
                    "%s: the failed result of %s:%d@%d cannot be stored; moving on with its "
                    "dead letter alone",
                    self.stage,
                    ticket.tp.topic,
                    ticket.tp.partition,
                    ticket.offset,
                    exc_info=letter_exc,
                )
                self._succeeded([ticket])
                return
            await self._rewind([ticket], dependency, letter_exc)
            return
        self.poisoned += 1
        with contextlib.suppress(Exception):  # the TTL index forgets it anyway
            await self._failures.forget(key)
        self._succeeded([ticket])

    # --- rewind -------------------------------------------------------------------------------
    async def _rewind(
        self, tickets: Sequence[Ticket], dependency: str | None, exc: BaseException
    ) -> None:
        """Give the inputs back to Kafka: pause, seek to the oldest input not done, resume later.

        An outage pauses every partition of the stage (they all need the dependency); a retry of
        one input pauses only its own."""
        consumer = self._app.consumer
        failing = {t.tp for t in tickets}
        if dependency is not None:
            if self._down is None:
                log.warning(
                    "%s: %s unavailable (%s: %s); pausing and rewinding",
                    self.stage,
                    dependency,
                    type(exc).__name__,
                    exc,
                )
            self._down = dependency
            self._health.down(self.stage, dependency)
            paused = {TP(tp.topic, tp.partition) for tp in consumer.assignment()}
            paused = {tp for tp in paused if tp.topic == self.topic}
        else:
            paused = set(failing)
        consumer.pause_partitions(paused)  # before the seek: no stale record may pass Faust now
        self._paused |= paused
        for tp in failing:
            pending = self._pending.pop(tp, {})
            for ticket in pending.values():
                ticket.abandoned = True
            oldest = min(pending, default=min(t.offset for t in tickets if t.tp == tp))
            self._expect[tp] = oldest
            await self._seek(tp, oldest)
        self.rewinds += 1
        metrics.RETRIES.labels(self.stage, dependency or "none").inc(len(tickets))
        self._schedule_resume(self._backoff.next())

    async def _seek(self, tp: TP, offset: int) -> None:
        """On the consumer's own thread (Faust runs aiokafka there; a seek from this thread
        would touch its fetcher's futures from the wrong event loop)."""
        await self._app.consumer.seek_wait({tp: offset})

    def _seek_again(self, tp: TP) -> None:
        if tp in self._seeks:
            return

        async def seek() -> None:
            try:
                if tp in self._expect:
                    await self._seek(tp, self._expect[tp])
            finally:
                del self._seeks[tp]

        self._seeks[tp] = asyncio.ensure_future(seek())

    def _schedule_resume(self, delay_s: float) -> None:
        if self._resumer is not None:
            self._resumer.cancel()
        self._resumer = asyncio.ensure_future(self._resume_after(delay_s))

    async def _resume_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        while self._app.rebalancing:  # noqa: ASYNC110 - a flag set by Faust, not an event
            await asyncio.sleep(0.1)
        # Faust's own TP type: resume_partitions() adds what it is given to a set that must hold
        # nothing else (aiokafka's TopicPartition crashes its fetcher there).
        assigned = {TP(tp.topic, tp.partition) for tp in self._app.consumer.assignment()}
        self._app.consumer.resume_partitions({tp for tp in self._paused if tp in assigned})
        self._paused.clear()
        await self._until_refetched()

    async def _until_refetched(self) -> None:
        """Seek again where a rewound partition's refetch has not begun after REFETCH_CHECK_S.

        Faust records a message as read once its agent queue took it, after our seek when that
        queue was full; the refetch is then dropped as already read up to that stale offset. A
        stale copy that reaches `admit` triggers the next seek, but when it was the partition's
        last record nothing else would, and the partition would wait for ever."""
        while self._expect:
            await asyncio.sleep(REFETCH_CHECK_S)  # a new rewind cancels this and checks on
            for tp in list(self._expect):
                self._seek_again(tp)

    # --- rebalance and shutdown ---------------------------------------------------------------
    def close(self, tps: set[TP]) -> None:
        """Partitions about to be revoked: take nothing more from them in this generation. An
        input taken after the settle's commit would be acknowledged behind inputs abandoned
        there, and Faust would then commit past those."""
        revoked = {TP(tp.topic, tp.partition) for tp in tps}
        self._closed = (self._app.consumer_generation_id, revoked)

    async def settle(self, tps: set[TP] | None, timeout_s: float) -> None:
        """Wait (bounded) for the inputs in hand on `tps` (all when None) to finish, so that
        their offsets are committed by this worker instead of being redone by the next."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and any(  # noqa: ASYNC110 - polls the ledger
            ticket
            for tp, pending in self._pending.items()
            if tps is None or tp in tps
            for ticket in pending.values()
            if not (ticket.done or ticket.abandoned)
        ):
            await asyncio.sleep(0.02)

    def forget(self, tps: set[TP]) -> None:
        """Partitions revoked: what is still in hand there is redone by their next owner."""
        for tp in tps:
            for ticket in self._pending.pop(tp, {}).values():
                ticket.abandoned = True
            self._expect.pop(tp, None)
            self._paused.discard(tp)
