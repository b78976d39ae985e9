"""Test harness: starts the real services once per session on random loopback ports.

Apache Kafka 3.9 (KRaft), secantusdb (MongoDB wire), redis-server and moto's S3 server run as child
processes. A service that cannot start makes every test that needs it fail with its log tail;
nothing is skipped. When an integration test fails, the log tails of the services are attached to
its report.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Network-free settings for every test (platform-notes): no hub, no auto-install, no IMDS probe.
_OFFLINE = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "YOLO_CONFIG_DIR": tempfile.mkdtemp(prefix="mugpos-yolo-"),
}
for _name, _value in _OFFLINE.items():
    os.environ.setdefault(_name, _value)
# Settings come from each test, never from the developer's shell.
for _name in [n for n in os.environ if n.startswith("MUGPOS_")]:
    del os.environ[_name]

from core.config import Settings  # noqa: E402 - after the environment is cleaned
from infra.launchers import (  # noqa: E402
    KafkaBroker,
    MotoS3Server,
    RedisServer,
    SecantusServer,
)
from infra.launchers.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY  # noqa: E402

_started: dict[str, object] = {}
_pids: dict[str, int | None] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/integration and params marked `integration` need services; the rest is `unit`."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.unit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed and _started:
        for name, service in _started.items():
            process = getattr(service, "process", None)
            if process is not None:
                report.sections.append((f"{name} log (last lines)", process.log_tail(30)))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _started:
        return
    terminalreporter.section("real services used by this run")
    for line in _describe_services():
        terminalreporter.write_line(line)


def _describe_services() -> list[str]:
    lines = []
    for name, service in _started.items():
        pid = _pids.get(name)
        if isinstance(service, KafkaBroker):
            lines.append(
                f"kafka      Apache Kafka {service.version()} KRaft at {service.bootstrap}, "
                f"cluster id {service.cluster_id}"
            )
        elif isinstance(service, SecantusServer):
            lines.append(f"mongodb    secantusdb at {service.uri}")
        elif isinstance(service, RedisServer):
            lines.append(f"redis      redis-server at {service.url}")
        elif isinstance(service, MotoS3Server):
            lines.append(f"s3         moto server at {service.endpoint_url}")
        else:
            lines.append(name)
        lines[-1] += f", pid {pid}"
    return lines


def _run(name: str, service) -> Iterator:
    try:
        service.start()
    except BaseException:
        service.stop()
        raise
    _started[name] = service
    _pids[name] = service.process.pid if service.process else None
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    tmp = tmp_path_factory.mktemp("kafka")
    yield from _run("kafka", KafkaBroker(tmp))


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer]:
    tmp = tmp_path_factory.mktemp("secantus")
    yield from _run("mongodb", SecantusServer(tmp))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    tmp = tmp_path_factory.mktemp("redis")
    yield from _run("redis", RedisServer(tmp))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    tmp = tmp_path_factory.mktemp("moto")
    yield from _run("s3", MotoS3Server(tmp))


@pytest.fixture
def unique_name() -> str:
    """A fresh name per test, so tests sharing one broker/server never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"


def settings_for(
    name: str,
    kafka: KafkaBroker,
    mongo: SecantusServer,
    redis: RedisServer,
    s3: MotoS3Server,
) -> Settings:
    """Settings for every real service, with a topic prefix, database and bucket named `name`."""
    return Settings(
        _env_file=None,
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=name,
        topic_partitions=3,
        mongodb_uri=mongo.uri,
        mongodb_db=name,
        redis_url=redis.url,
        object_store="s3",
        s3_endpoint_url=s3.endpoint_url,
        s3_bucket=name,
        s3_region="us-east-1",
        s3_access_key_id=ACCESS_KEY_ID,
        s3_secret_access_key=SECRET_ACCESS_KEY,
        device="cpu",
    )


@pytest.fixture
def service_settings(
    kafka_broker: KafkaBroker,
    mongo_server: SecantusServer,
    redis_server: RedisServer,
    s3_server: MotoS3Server,
    unique_name: str,
) -> Settings:
    """Settings for every real service, with a topic prefix, database and bucket of its own."""
    return settings_for(unique_name, kafka_broker, mongo_server, redis_server, s3_server)
