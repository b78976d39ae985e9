"""The real services a benchmark runs against (same launchers as the test harness)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from infra.launchers import KafkaBroker, MotoS3Server, RedisServer, SecantusServer
from infra.launchers.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY


@contextmanager
def real_services(folder: Path) -> Iterator[dict[str, str]]:
    """Kafka 3.9, secantusdb, redis-server and moto S3 on loopback; yields their MUGPOS_* env."""
    with running_services(folder) as (env, _pids):
        yield env


@contextmanager
def running_services(folder: Path) -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    """As `real_services`, and also the PID of each service process (for CPU accounting):
    {"kafka": …, "mongodb": …, "redis": …, "s3": …}."""
    with ExitStack() as stack:
        services = [
            KafkaBroker(folder / "kafka"),
            SecantusServer(folder / "mongo"),
            RedisServer(folder / "redis"),
            MotoS3Server(folder / "s3"),
        ]
        for service in services:
            stack.callback(service.stop)
            service.start()
        kafka, mongo_server, redis_server, s3 = services
        pids = {
            name: service.process.pid
            for name, service in (
                ("kafka", kafka),
                ("mongodb", mongo_server),
                ("redis", redis_server),
                ("s3", s3),
            )
            if service.process is not None and service.process.pid is not None
        }
        yield (
            {
                "MUGPOS_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "MUGPOS_MONGODB_URI": mongo_server.uri,
                "MUGPOS_REDIS_URL": redis_server.url,
                "MUGPOS_S3_ENDPOINT_URL": s3.endpoint_url,
                "MUGPOS_S3_REGION": "us-east-1",
                "MUGPOS_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "MUGPOS_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
                "MUGPOS_DEVICE": "cpu",
            },
            pids,
        )


def settings_from_env(env: dict[str, str]):
    from core.config import Settings

    return Settings(
        _env_file=None,
        **{k.removeprefix("MUGPOS_").lower(): v for k, v in env.items() if k.startswith("MUGPOS_")},
    )
