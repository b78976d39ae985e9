"""A child process with a log file, a readiness probe and a clean stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO


class ServiceStartError(RuntimeError):
    """A service did not become ready; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    """One service process: `start()` returns once `probe()` succeeds, or raises with its log."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, probe: Callable[[], bool], *, timeout_s: float, poll_s: float = 0.1) -> None:
        """Launch and poll `probe` until it returns True; fail fast if the process exits."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # a Ctrl-C in the terminal must not kill it mid-test
            )
        except OSError as exc:
            self._log.close()
            raise ServiceStartError(f"{self.name}: cannot run {self.argv[0]!r}: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._fail(f"exited with code {self._proc.returncode} before it was ready")
            try:
                if probe():
                    return
            except Exception as exc:  # the probe's failures are expected until the service is up
                last_error = exc
            time.sleep(poll_s)
        reason = f"not ready after {timeout_s:.0f} s"
        if last_error is not None:
            reason += f" (last probe error: {last_error!r})"
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        self.stop()
        raise ServiceStartError(
            f"{self.name} {reason}. Log {self.log_path}, last lines:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process we started, SIGKILL it if it lingers. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout_s)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
