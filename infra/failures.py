"""Which failures mean "a dependency is unavailable" and which mean "this process must stop".

The pipeline treats the two very differently: an unavailable dependency pauses the work and
retries it later, untouched (nothing is dead-lettered for an outage); a failure that poisons the
process (out of memory, a sticky CUDA error) stops the worker so its partitions move to a healthy
one. Everything else is a failure of one input. The adapters' exception types live here, in one
place, so stages never import a driver to decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from aiokafka import errors as kafka_errors
from pymongo import errors as mongo_errors
from redis import exceptions as redis_errors

from infra.object_store.base import InvalidObjectKey, ObjectNotFound, ObjectStoreError

Dependency = Literal["mongodb", "object_store", "kafka", "redis"]

_MONGO_DOWN = (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout)
# Not marked retriable by aiokafka, yet they only say the broker did not answer in time.
_KAFKA_DOWN = (kafka_errors.KafkaTimeoutError, kafka_errors.KafkaConnectionError)
_REDIS_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError)
# Text of torch's RuntimeErrors after which the CUDA context is unusable for the process.
_STICKY_CUDA = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "device-side assert")


class DependencyUnavailable(RuntimeError):
    """Raised where a stage itself finds a dependency unusable (e.g. a rule set it cannot read)."""

    def __init__(self, dependency: Dependency, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what caused it, and the members of exception groups."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def unavailable_dependency(exc: BaseException) -> Dependency | None:
    """The dependency this failure says is down or not answering, else None."""
    for current in _chain(exc):
        if isinstance(current, DependencyUnavailable):
            return current.dependency
        if isinstance(current, _MONGO_DOWN):
            return "mongodb"
        if isinstance(current, ObjectStoreError) and not isinstance(
            current, ObjectNotFound | InvalidObjectKey
        ):
            return "object_store"  # unreachable, 5xx, or the bucket is gone: not the input's fault
        if isinstance(current, _KAFKA_DOWN) or (
            isinstance(current, kafka_errors.KafkaError) and current.retriable
        ):
            return "kafka"
        if isinstance(current, _REDIS_DOWN):
            return "redis"
    return None


def is_fatal(exc: BaseException) -> bool:
    """True when the process cannot go on safely: its inputs must move to another worker."""
    for current in _chain(exc):
        if isinstance(current, MemoryError | SystemError):
            return True
        name = type(current).__name__
        if name == "OutOfMemoryError" and type(current).__module__.startswith("torch"):
            return True
        if isinstance(current, RuntimeError) and any(s in str(current) for s in _STICKY_CUDA):
            return True
    return False
