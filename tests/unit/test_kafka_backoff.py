"""aiokafka clients back off between reconnects to a broker that refuses them (infra.kafka_backoff).

A real client against a loopback port nothing listens on: every dial is refused at once, as with
a stopped broker. The dials are counted from aiokafka's own "Unable connect" records.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaError

from infra.kafka_backoff import BACKOFF_MAX_S, backoff_s, install_reconnect_backoff
from infra.launchers import free_port


class Dials(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Unable connect to node"):
            self.count += 1


@pytest.fixture
def dials() -> Dials:
    handler = Dials()
    log = logging.getLogger("aiokafka")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def refused_client() -> AIOKafkaClient:
    """A client whose only known node is a port nobody listens on (as after a broker stop)."""
    bootstrap = f"127.0.0.1:{free_port()}"
    install_reconnect_backoff()
    client = AIOKafkaClient(bootstrap_servers=bootstrap, retry_backoff_ms=100)
    client.cluster = ClusterMetadata(bootstrap_servers=bootstrap)
    return client


def test_the_backoff_doubles_from_the_retry_backoff_up_to_a_second() -> None:
    assert [backoff_s(n, 0.1) for n in range(7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert BACKOFF_MAX_S == 1.0


def test_installing_twice_wraps_once() -> None:
    install_reconnect_backoff()
    wrapped = AIOKafkaClient._get_conn, AIOKafkaClient._metadata_update
    install_reconnect_backoff()
    assert (AIOKafkaClient._get_conn, AIOKafkaClient._metadata_update) == wrapped


async def test_a_refused_node_is_dialled_a_few_times_a_second_not_at_every_ask(
    dials: Dials,
) -> None:
    client = refused_client()
    asks = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # what a fetch loop without a pause would do
        assert await client._get_conn("bootstrap-0") is None
        asks += 1
        await asyncio.sleep(0.005)
    await client.close()
    assert asks > 50
    assert 2 <= dials.count <= 6  # at 0, 0.1, 0.3, 0.7 and 1.5 s (unpaced: one per ask)


async def test_a_failed_background_refresh_holds_its_waiters_back(dials: Dials) -> None:
    client = refused_client()
    waits = []
    for _ in range(3):
        started = time.monotonic()
        assert await client._metadata_update(client.cluster, set()) is False
        waits.append(time.monotonic() - started)
    await client.close()
    for waited, expected in zip(waits, (0.1, 0.2, 0.4), strict=True):
        assert expected <= waited < expected + 0.5, waits
    # A one-off fetch (admin calls, probes) still fails at once.
    started = time.monotonic()
    with pytest.raises(KafkaError):
        await refused_client().fetch_all_metadata()
    assert time.monotonic() - started < 0.1
