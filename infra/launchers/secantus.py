"""secantusdb: a MongoDB-wire server (WiredTiger underneath), in memory, spoken to over TCP."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from infra.launchers.process import ManagedProcess, ServiceStartError, free_port


class SecantusServer:
    def __init__(self, workdir: Path, *, storage_path: str = ":memory:") -> None:
        self.workdir = workdir
        self.storage_path = storage_path
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout_s: float = 30.0) -> None:
        binary = shutil.which("secantusd-py", path=str(Path(sys.executable).parent))
        binary = binary or shutil.which("secantusd-py")
        if binary is None:
            raise ServiceStartError(
                "secantusdb: `secantusd-py` not found; the demo needs: pip install 'mugpos[demo]'"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # a restart comes back where clients look
        argv = [
            binary,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            self.storage_path,
            "--log-level",
            "WARNING",
        ]
        # cwd is our own folder so the server's config auto-discovery finds nothing stray.
        self.process = ManagedProcess(
            "secantusdb", argv, self.workdir / "secantusdb.log", cwd=self.workdir
        )
        self.process.start(self._pings, timeout_s=timeout_s)

    def _pings(self) -> bool:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(self.uri, serverSelectionTimeoutMS=1000)
        try:
            return client.admin.command("ping").get("ok") == 1
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
