"""redis-server from Debian's package, in memory only (no RDB/AOF files)."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.launchers.process import ManagedProcess, ServiceStartError, free_port


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceStartError(
                "redis: `redis-server` is not on PATH; `make test` installs Debian's redis-server"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # a restart comes back where clients look
        argv = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--protected-mode",
            "yes",
        ]
        self.process = ManagedProcess("redis", argv, self.workdir / "redis.log")
        self.process.start(self._pong, timeout_s=timeout_s)

    def _pong(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
