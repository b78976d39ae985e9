"""A service that cannot start must fail loudly with its log, and stop only its own PID."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infra.launchers import KafkaBroker, ManagedProcess, ServiceStartError, free_port


def test_process_that_exits_early_fails_with_its_log_tail(tmp_path: Path) -> None:
    script = "import sys; print('binding port 1: permission denied'); sys.exit(3)"
    process = ManagedProcess("broken", [sys.executable, "-c", script], tmp_path / "broken.log")
    with pytest.raises(ServiceStartError) as caught:
        process.start(lambda: False, timeout_s=10)
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "binding port 1: permission denied" in message


def test_process_never_ready_times_out_with_last_probe_error(tmp_path: Path) -> None:
    script = "import time; print('still warming up', flush=True); time.sleep(60)"
    process = ManagedProcess("slow", [sys.executable, "-c", script], tmp_path / "slow.log")

    def probe() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(ServiceStartError) as caught:
        process.start(probe, timeout_s=1.0)
    assert "not ready after 1 s" in str(caught.value)
    assert "nobody home" in str(caught.value)
    assert not process.running()  # the child was stopped, not left behind


def test_missing_binary_is_a_start_error(tmp_path: Path) -> None:
    process = ManagedProcess("ghost", ["/nonexistent/ghostd"], tmp_path / "ghost.log")
    with pytest.raises(ServiceStartError, match="cannot run"):
        process.start(lambda: True, timeout_s=1)


def test_ready_process_is_stopped_by_pid(tmp_path: Path) -> None:
    process = ManagedProcess(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleeper.log"
    )
    process.start(lambda: True, timeout_s=5)
    assert process.running()
    process.stop()
    assert not process.running()
    process.stop()  # twice is harmless


def test_kafka_without_jars_says_how_to_fetch_them(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, libs_dir=tmp_path / "no-jars")
    with pytest.raises(ServiceStartError, match="make kafka-libs"):
        broker.start()


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_kafka_restart_needs_an_earlier_start(tmp_path: Path) -> None:
    """restart() brings a stopped broker back on its port and data; there is none before start()."""
    broker = KafkaBroker(tmp_path, libs_dir=tmp_path / "no-jars")
    with pytest.raises(ServiceStartError, match="restart"):
        broker.restart()
