"""Reconnect backoff for aiokafka, which has none: a client waits before knocking again.

Measured with aiokafka 0.14 against a stopped Kafka 3.9 broker (connection refused at once):

* A producer holding unsent batches (partition leader unknown) and a fetcher with invalid
  metadata await `force_metadata_update()` in a loop with no pause; the background refresh fails
  at once, so the loop spins: ~2,000 refreshes and ~4,000 ERROR records a second and a full core
  in a worker that had work in hand (aio-libs/aiokafka#1155 reports the fetcher's side).
* Every other loop (fetch, group coordinator, sender) retries after `retry_backoff_ms` (100 ms),
  and each retry opens a new TCP connection: ~25 connection attempts a second per client.

`install_reconnect_backoff()` adds what the Java client calls `reconnect.backoff.ms` /
`reconnect.backoff.max.ms`, exponential from `retry_backoff_ms` up to 1 s:

* after a failed connection to a node, `_get_conn` answers "not ready" (None, as for a failed
  connection) without dialling until the node's backoff has passed;
* after a failed background metadata refresh, its result is held back for the backoff, which
  paces every loop waiting on it at once.

A success resets both, so a restarted broker is found within about a second. Faust builds its
clients itself, without a hook for client options, so the client class is wrapped: once per
process, for every client in it (Faust's consumer thread included). `fetch_all_metadata()`
(admin calls, start-up probes) is left alone and still fails at once.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup

#: The Java client's `reconnect.backoff.max.ms` default.
BACKOFF_MAX_S = 1.0
_installing = threading.Lock()


def backoff_s(failures: int, base_s: float, max_s: float = BACKOFF_MAX_S) -> float:
    """base, 2 x base, 4 x base … up to max_s, for the n-th failure in a row (none for 0)."""
    return 0.0 if failures <= 0 else min(max_s, base_s * 2 ** (failures - 1))


def install_reconnect_backoff(max_s: float = BACKOFF_MAX_S) -> None:
    """Wrap aiokafka's client once per process (a second call changes nothing)."""
    with _installing:
        if not getattr(AIOKafkaClient._get_conn, "backoff", False):
            _wrap(max_s)


def _wrap(max_s: float) -> None:
    get_conn = AIOKafkaClient._get_conn
    metadata_update = AIOKafkaClient._metadata_update

    @functools.wraps(get_conn)
    async def _get_conn(self: AIOKafkaClient, node_id: Any, **kwargs: Any) -> Any:
        backoffs: dict = self.__dict__.setdefault("_conn_backoff", {})
        key = (node_id, kwargs.get("group", ConnectionGroup.DEFAULT))
        failures, until = backoffs.get(key, (0, 0.0))
        if failures and time.monotonic() < until:
            return None  # what aiokafka answers for a failed connection: "node not ready"
        conn = await get_conn(self, node_id, **kwargs)
        if conn is None:
            failures += 1
            delay = backoff_s(failures, self._retry_backoff, max_s)
            backoffs[key] = (failures, time.monotonic() + delay)
        else:
            backoffs.pop(key, None)
        return conn

    @functools.wraps(metadata_update)
    async def _metadata_update(self: AIOKafkaClient, cluster_metadata: Any, topics: Any) -> bool:
        updated = await metadata_update(self, cluster_metadata, topics)
        if cluster_metadata is self.cluster:  # the background refresh, not fetch_all_metadata()
            failures = 0 if updated else self.__dict__.get("_failed_refreshes", 0) + 1
            self._failed_refreshes = failures
            if failures:
                await asyncio.sleep(backoff_s(failures, self._retry_backoff, max_s))
        return updated

    _get_conn.backoff = True  # type: ignore[attr-defined]
    AIOKafkaClient._get_conn = _get_conn  # type: ignore[method-assign]
    AIOKafkaClient._metadata_update = _metadata_update  # type: ignore[method-assign]
