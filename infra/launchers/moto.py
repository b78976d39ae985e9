"""moto's S3 server mode on loopback: the stand-in for Cloudflare R2 in tests."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path

from infra.launchers.process import ManagedProcess, ServiceStartError, free_port

# moto accepts any credentials; these only have to be present and consistent.
ACCESS_KEY_ID = "mugpos-test"
SECRET_ACCESS_KEY = "mugpos-test-secret"  # noqa: S105 - a fixed key for a throwaway local server


class MotoS3Server:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        binary = binary or shutil.which("moto_server")
        if binary is None:
            raise ServiceStartError("moto: `moto_server` not found; install moto[server]")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # a restart comes back where clients look
        argv = [binary, "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = ManagedProcess("moto-s3", argv, self.workdir / "moto.log")
        self.process.start(self._answers, timeout_s=timeout_s)

    def _answers(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as response:  # noqa: S310
            return response.status == 200

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
