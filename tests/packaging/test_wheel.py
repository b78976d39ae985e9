"""The package as a user installs it: the built wheel, not the editable checkout. An editable
install reads data files from the source tree, so only this test sees one the wheel leaves out.

The wheel is built from the checkout (no build isolation: the registry may not be reachable) and
installed without dependencies into a fresh virtual environment that borrows the dependencies
already installed in this one (a path entry, so the checkout's own editable hook is not loaded).
Every command then runs from an empty folder, and the test checks it imported mugpos from the
new environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from core.models.manifest import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180
BUILD_OUTPUTS = (".venv", ".cache", ".demo", ".git", "build", "dist", "*.egg-info", "__pycache__",
                 ".pytest_cache", ".ruff_cache")  # fmt: skip
LOADS_DEFAULT_MODEL = """
import asyncio, tempfile
from pathlib import Path
import numpy as np
import core
from core.config import Settings
from core.models.manager import ModelManager
from infra.model_store import ModelStore

cache = Path(tempfile.mkdtemp())
store = ModelStore(cache)
files = asyncio.run(store.resolve(Settings.model_fields["model"].default))
manager = ModelManager(store.resolve, device="cpu", export_dir=cache / "onnx")
model = asyncio.run(manager.activate(Settings.model_fields["model"].default))
ref, detections = manager.detect([np.full((480, 640, 3), 200, dtype=np.uint8)])
print(ref, files.source, files.path, core.__file__, len(detections))
"""


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy without build outputs: setuptools reuses a stale `build/` or
    `*.egg-info/SOURCES.txt`, which can carry files the configuration no longer ships."""
    source = tmp_path_factory.mktemp("source") / "mugpos"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_OUTPUTS))
    out = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(source)],
        cwd=out,
    )  # fmt: skip
    (built,) = out.glob("mugpos-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel in it, the current dependencies on its path."""
    env = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)], cwd=env)
    python = env / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env
        ).strip()
    )
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)],
        cwd=env,
    )  # fmt: skip
    return env


# The web console and the API docs' assets, served by the installed app (no lifespan: static).
SERVES_CONSOLE = """
import re
from fastapi.testclient import TestClient
import api
from api.main import create_app
from core.config import Settings
client = TestClient(create_app(Settings(_env_file=None)))
docs = client.get("/api/docs").text
paths = ["/console/", "/console/js/app.js", "/console/js/pages/rules.js", "/console/css/rules.css"]
paths += re.findall(r'(/api/docs/assets/[^"]+)', docs)
for path in paths:
    print(path, client.get(path).status_code)
print(api.__file__)
"""


def test_the_wheel_carries_data_files_and_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "core/rules/grammar.lark",
        "control/licence_exceptions.toml",
        "infra/kafka/pom.xml",
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "assets" / "models").glob("*/*/*")),
    ):
        assert needed in names, f"{needed} is not in the wheel"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


def test_the_installed_wheel_works_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    bin_dir = installed / "bin"
    assert _run([str(bin_dir / "mugpos"), "--version"], tmp_path).strip() == "mugpos 0.1.0"
    verdict = _run(
        [str(bin_dir / "mugpos"), "rules", "test", "Every mug must be on a coaster."], tmp_path
    )
    assert "coaster" in verdict
    ref, source, weights, core_file, found = (
        _run([str(bin_dir / "python"), "-c", LOADS_DEFAULT_MODEL], tmp_path)
        .splitlines()[-1]
        .split()
    )  # after ultralytics' export messages
    assert (ref, source, found) == (DEFAULT_MODEL, "bundled", "1")
    for path in (weights, core_file):  # read from the new environment, not the checkout
        assert Path(path).is_relative_to(installed), path
    *served, api_file = _run([str(bin_dir / "python"), "-c", SERVES_CONSOLE], tmp_path).splitlines()
    assert Path(api_file).is_relative_to(installed), api_file
    assert len(served) >= 6, served  # the console's files and the docs' script and style sheet
    assert all(line.endswith(" 200") for line in served), served
