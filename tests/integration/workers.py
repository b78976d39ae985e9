"""Real `mugpos worker` child processes and scene images for the integration tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from control.console import worker_argv
from core.config import Settings, settings_env
from core.synth.render import scene_jpegs

REPO = Path(__file__).resolve().parents[2]
MAX_IMAGE_BYTES = 3_000_000  # above the broker's 1 MB message limit: big images use the claim check


def scene_jpeg(seed: int, size: int = 480) -> bytes:
    return scene_jpegs(600_000 + seed, 1, size)[0]


class WorkerProcess:
    """One `mugpos worker` child process with its own log and Faust data folder."""

    def __init__(
        self,
        settings: Settings,
        folder: Path,
        name: str,
        extra_env: dict[str, str] | None = None,
        *,
        faulty: bool = False,
        stage: str = "all",
    ) -> None:
        """`faulty`: the worker of tests.integration.faulty_worker, which fails on marked inputs;
        `stage`: all (fused), or which stages of a split deployment this worker runs."""
        self.log_path = folder / f"{name}.log"
        env = {
            **os.environ,
            **settings_env(settings),
            "MUGPOS_TOPIC_PARTITIONS": "3",
            "MUGPOS_MAX_BATCH": "8",
            "MUGPOS_MAX_WAIT_MS": "50",
            "MUGPOS_DEVICE": "cpu",
            "MUGPOS_MODEL_CACHE_DIR": str(folder / "models"),
            "MUGPOS_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
            **(extra_env or {}),
        }
        argv = worker_argv(folder / name, stage=stage)
        if faulty:
            argv[argv.index("control.cli")] = "tests.integration.faulty_worker"
            env["PYTHONPATH"] = str(REPO)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM: drain and commit, then exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()
        print(f"--- {self.log_path.name} ---")
        print(self.log_path.read_text(errors="replace")[-3000:])
        return self.process.returncode
