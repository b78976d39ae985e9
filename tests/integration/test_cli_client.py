"""`mugpos login|submit|results` and `mugpos models import`, as a user runs them: the console
script's module in child processes, against the real API and a real worker."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from control.console import mugpos_argv
from core.config import Settings, settings_env
from tests.integration.api_server import PASSWORD, ApiServer, login, start_api
from tests.integration.workers import WorkerProcess, scene_jpeg
from tests.model_fixtures import coco_style_weights

SOURCE = "cli-desk"


def _stack(settings: Settings, folder: Path, env: dict[str, str] | None = None) -> Iterator:
    worker = WorkerProcess(settings, folder, "worker", env)
    server = start_api(settings)
    try:
        yield server
    finally:
        server.stop()
        worker.stop()


@pytest.fixture
def stack(api_deployment: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    yield from _stack(api_deployment, tmp_path)


class Cli:
    """`mugpos …` in a child process with its own config folder, pointed at one API."""

    def __init__(self, api: ApiServer, home: Path) -> None:
        self.home = home
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MUGPOS_")},
            "MUGPOS_CONFIG_DIR": str(home),
            "MUGPOS_API_URL": api.url,
        }

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            mugpos_argv(*args),
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            mugpos_argv(*args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _add_rule(api: ApiServer, text: str) -> None:
    reply = httpx.post(
        f"{api.url}/api/v1/rules", json={"text": text}, headers=login(api, "manager")
    )
    assert reply.status_code == 201, reply.text


def _wait_for_line(stream, needle: str, timeout_s: float = 60) -> None:
    """Read `stream` until a line contains `needle` (in a thread: pipes have no timeout)."""
    found = threading.Event()

    def read() -> None:
        for line in stream:
            if needle in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout_s), f"no {needle!r} within {timeout_s} s"


def test_login_submit_wait_watch_and_get(stack: ApiServer, tmp_path: Path) -> None:
    cli = Cli(stack, tmp_path / "config")
    _add_rule(stack, "Every mug must be on a coaster.")
    folder = tmp_path / "desk"
    folder.mkdir()
    for seed in (1, 2):
        (folder / f"scene-{seed}.jpg").write_bytes(scene_jpeg(seed))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    refused = cli("submit", str(folder))
    assert refused.returncode == 1  # no credentials yet: the API says who may, the CLI says how
    assert "run `mugpos login`" in refused.stdout

    logged_in = cli("login", "--username", "analyst", MUGPOS_PASSWORD=PASSWORD)
    assert logged_in.returncode == 0, logged_in.stderr
    stored = tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert PASSWORD not in stored.read_text()

    watcher = cli.start("results", "watch", "--source-id", SOURCE, "--count", "2", "--json")
    try:
        _wait_for_line(watcher.stderr, "watching for results")
        submitted = cli("submit", str(folder), "--source-id", SOURCE, "--wait", "--json")
        watched, _ = watcher.communicate(timeout=120)
    finally:
        watcher.kill()
    assert submitted.returncode == 1, submitted.stderr  # one file refused
    lines = [orjson.loads(line) for line in submitted.stdout.splitlines()]
    by_file = {Path(line["file"]).name: line for line in lines}
    assert set(by_file) == {"broken.png", "scene-1.jpg", "scene-2.jpg"}
    assert by_file["broken.png"]["status"] == "refused"
    assert by_file["broken.png"]["error"] in ("decode_error", "truncated_image")
    good = [by_file["scene-1.jpg"], by_file["scene-2.jpg"]]
    assert [line["status"] for line in good] == ["ok", "ok"]
    assert all(line["mugs"] >= 1 and line["result"]["verdicts"] for line in good)

    assert watcher.returncode == 0
    live = [orjson.loads(line) for line in watched.splitlines()]
    assert {r["request_id"] for r in live} == {line["request_id"] for line in good}

    request_id = good[0]["request_id"]
    picture = tmp_path / "annotated.jpg"
    shown = cli("results", "get", request_id, "--annotated", str(picture))
    assert shown.returncode == 0, shown.stderr
    assert "Every mug must be on a coaster" in shown.stdout
    assert picture.read_bytes()[:3] == b"\xff\xd8\xff"
    listed = cli("results", "list", "--source-id", SOURCE, "--json")
    assert {orjson.loads(line)["request_id"] for line in listed.stdout.splitlines()} == {
        line["request_id"] for line in good
    }
    unknown = cli("results", "get", "no-such-request")
    assert unknown.returncode == 1
    assert "unknown_request" in unknown.stdout

    assert cli("logout").returncode == 0
    assert not stored.exists()


def test_login_with_an_api_key_and_a_wrong_password(api: ApiServer, tmp_path: Path) -> None:
    cli = Cli(api, tmp_path)
    wrong = cli("login", "-u", "analyst", MUGPOS_PASSWORD="wrong")
    assert wrong.returncode == 1
    assert "bad_credentials" in wrong.stdout
    assert not (tmp_path / "credentials.json").exists()
    key = httpx.post(
        f"{api.url}/api/v1/api-keys",
        json={"name": "cli-test", "role": "viewer"},
        headers=login(api, "admin"),
    ).json()["api_key"]
    assert cli("login", "--api-key", "not-a-key").returncode == 1
    assert cli("login", "--api-key", key).returncode == 0
    listed = cli("results", "list")
    assert listed.returncode == 0, listed.stdout
    assert "request id" in listed.stdout


@pytest.fixture
def coco_stack(api_deployment: Settings, tmp_path: Path) -> Iterator[tuple[ApiServer, Path]]:
    """The API and a worker serving a model imported with `mugpos models import --push` from
    COCO-style weights (no coaster class): the worker fetches it from the object store."""
    weights = coco_style_weights(tmp_path / "yolo-coco.pt")
    imported = subprocess.run(
        mugpos_argv(
            "models", "import", str(weights), "--name", "coco-yolo", "--version", "1.0.0", "--push"
        ),
        env={**os.environ, **settings_env(api_deployment)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "cannot see coasters" in imported.stdout
    assert "pushed coco-yolo:1.0.0 to the object store" in imported.stdout
    for server in _stack(api_deployment, tmp_path, {"MUGPOS_MODEL": "coco-yolo:1.0.0"}):
        yield server, tmp_path


def test_a_model_without_coasters_answers_coaster_rules_not_applicable(
    coco_stack: tuple[ApiServer, Path],
) -> None:
    api, folder = coco_stack
    _add_rule(api, "Every mug must be on a coaster.")
    _add_rule(api, "Mugs must be at least 1 cm from the table edge.")
    cli = Cli(api, folder / "config")
    assert cli("login", "-u", "analyst", MUGPOS_PASSWORD=PASSWORD).returncode == 0
    image = folder / "scene.jpg"
    image.write_bytes(scene_jpeg(7))
    done = cli("submit", str(image), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = orjson.loads(done.stdout)["result"]
    assert result["model"]["name"] == "coco-yolo"
    assert result["model"]["roles"] == ["mug", "table", "hazard"]
    assert {d["class_name"] for d in result["detections"] if d["role"] == "mug"} == {"cup"}
    mugs = result["positioning"]["mugs"]
    assert mugs
    assert all(m["on_coaster"] is None for m in mugs)
    verdicts = {v["name"]: v for v in result["verdicts"]}
    coaster = verdicts["Every mug must be on a coaster"]
    assert coaster["passed"] is None
    assert "cannot see coasters" in coaster["message"]
    assert verdicts["Mugs must be at least 1 cm from the table edge"]["passed"] is not None

    # A source that names its own model is served by it, next to the worker's.
    source = {"model": "mugdet-synth:1.1.0"}
    put = httpx.put(
        f"{api.url}/api/v1/sources/desk-cam", json=source, headers=login(api, "manager")
    )
    assert put.status_code == 201, put.text
    done = cli("submit", str(image), "--source-id", "desk-cam", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = orjson.loads(done.stdout)["result"]
    assert (result["model"]["name"], result["source_version"]) == ("mugdet-synth", 1)
    assert "coaster" in result["model"]["roles"]
    verdicts = {v["name"]: v for v in result["verdicts"]}
    assert verdicts["Every mug must be on a coaster"]["passed"] is not None


def test_sources_registered_calibrated_listed_and_deleted(api: ApiServer, tmp_path: Path) -> None:
    cli = Cli(api, tmp_path)
    assert cli("login", "-u", "manager", MUGPOS_PASSWORD=PASSWORD).returncode == 0
    settings = tmp_path / "counter.json"
    settings.write_text(
        orjson.dumps(
            {"name": "counter", "zones": {"tray": {"polygon": [[10, 10], [200, 10], [200, 150]]}}}
        ).decode()
    )
    put = cli("sources", "put", "counter-cam", str(settings))
    assert put.returncode == 0, put.stdout + put.stderr
    assert "version 1 stored" in put.stdout
    calibrated = cli(
        "sources", "calibrate", "counter-cam", "120,80", "520,90", "600,420", "40,400",
        "--rectangle", "120x80", "--table-top",
    )  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stdout + calibrated.stderr
    got = orjson.loads(cli("sources", "get", "counter-cam").stdout)
    assert got["version"] == 2
    assert got["source"]["zones"]["tray"]["polygon"][1] == [200.0, 10.0], "zones kept"
    assert got["source"]["calibration"]["rectangle_cm"] == [120.0, 80.0]
    assert got["source"]["calibration"]["table_top"] is True
    listed = cli("sources", "list")
    assert "counter-cam" in listed.stdout
    assert "four_points" in listed.stdout
    line = cli(
        "sources", "calibrate", "counter-cam", "0,0", "1,0", "2,0", "3,0", "--rectangle", "1x1"
    )
    assert line.returncode == 1
    assert "source_invalid" in line.stdout
    state = cli("sources", "state", "counter-cam", "--json")
    assert orjson.loads(state.stdout)["frames"] == 0
    assert cli("sources", "delete", "counter-cam").returncode == 0
    gone = cli("sources", "get", "counter-cam")
    assert gone.returncode == 1
    assert "unknown_source" in gone.stdout
