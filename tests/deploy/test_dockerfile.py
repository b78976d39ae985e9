"""The Dockerfile (no Docker engine runs here): hadolint clean, and read statically for what the
images promise: two targets, dependencies before source, non-root, checks at build."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from types import ModuleType

import pytest

from tests.deploy.tools import DOCKERFILE, ROOT, hadolint, run

pytestmark = pytest.mark.unit


def _load(name: str) -> ModuleType:
    """deploy/docker/*.py run inside the image build; they are no package of the project."""
    spec = importlib.util.spec_from_file_location(
        f"_docker_{name}", ROOT / "deploy" / "docker" / f"{name}.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load("healthcheck")
requirements = _load("requirements")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, args in _instructions():
        if instruction == "FROM":
            current = []
            stages[args.split()[-1]] = current
        current.append((instruction, args))
    return stages


def test_hadolint_finds_nothing() -> None:
    result = run([hadolint(), "--no-color", str(DOCKERFILE)], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_a_formality(tmp_path) -> None:
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    result = run([hadolint(), "--no-color", str(sloppy)], timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_two_targets_on_pinned_bases() -> None:
    stages = _stages()
    assert {"cpu", "gpu"} <= set(stages)
    args = dict(
        a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a and "IMAGE" in a
    )
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", args["PYTHON_IMAGE"])
    assert re.fullmatch(
        r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", args["CUDA_IMAGE"]
    )
    assert stages["cpu-os"][0][1].startswith("${PYTHON_IMAGE}")
    assert stages["gpu-os"][0][1].startswith("${CUDA_IMAGE}")


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    for target in ("cpu", "gpu"):
        deps = _stages()[f"{target}-deps"]
        copies = [a for i, a in deps if i == "COPY"]
        assert copies == ["pyproject.toml deploy/docker/requirements.py /tmp/deps/"]
        run_deps = " ".join(a for i, a in deps if i == "RUN")
        assert "-r /tmp/deps/torch.txt" in run_deps
        assert "-r /tmp/deps/rest.txt" in run_deps
        final = _stages()[target]
        steps = [i for i, _ in final]
        install = next(a for i, a in final if i == "RUN" and "pip install" in a)
        assert "--no-deps" in install
        assert "from=wheel" in install
        assert steps.index("COPY") < [i for i, a in final].index("RUN")
    cpu_index = " ".join(a for i, a in _stages()["cpu-deps"] if i == "ARG")
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in cpu_index


def test_the_images_run_as_a_non_root_user_and_check_themselves() -> None:
    for target in ("cpu", "gpu"):
        stage = _stages()[target]
        users = [a for i, a in stage if i == "USER"]
        assert users
        assert users[-1].split(":")[0] not in ("root", "0")
        checks = " ".join(a for i, a in stage if i == "RUN")
        assert "mugpos licences" in checks
        assert "mugpos models list" in checks
        assert "mugpos models pull" in checks
        assert any(i == "HEALTHCHECK" for i, _ in stage)
    os_setup = " ".join(a for i, a in _stages()["cpu-os"])
    assert "--create-home" in os_setup
    assert "MUGPOS_MODEL_CACHE_DIR=/home/mugpos/.cache" in os_setup


def test_every_bundled_model_is_verified_at_build() -> None:
    bundled = {
        f"{version.parent.name}:{version.name}"
        for version in (ROOT / "assets" / "models").glob("*/*")
        if (version / "manifest.json").exists()
    }
    for target in ("cpu", "gpu"):
        arg = next(
            a for i, a in _stages()[target] if i == "ARG" and a.startswith("BUNDLED_MODELS=")
        )
        assert set(arg.split("=", 1)[1].strip('"').split()) == bundled


def test_the_build_context_holds_what_the_wheel_is_built_from() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore  # an allow-list: nothing else (.venv, .cache, .git, tests) is sent
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= allowed
    assert {"pyproject.toml", "README.md", "LICENSE", "assets", "deploy/docker"} <= allowed
    assert set(project["project"].get("license-files", [])) <= allowed


def test_the_dependency_split_covers_every_requirement() -> None:
    torch, rest = requirements.split(ROOT / "pyproject.toml")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(torch + rest) == sorted(declared)
    assert {t.split(">")[0].split("=")[0].split("<")[0] for t in torch} == {"torch", "torchvision"}


def test_the_health_check_asks_the_worker_or_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUGPOS_WORKER_HTTP_PORT", raising=False)
    monkeypatch.delenv("MUGPOS_API_PORT", raising=False)
    assert healthcheck.url(ready=False) == "http://127.0.0.1:8000/health"
    monkeypatch.setenv("MUGPOS_API_PORT", "8080")
    assert healthcheck.url(ready=True) == "http://127.0.0.1:8080/ready"
    monkeypatch.setenv("MUGPOS_WORKER_HTTP_PORT", "9100")
    assert healthcheck.url(ready=False) == "http://127.0.0.1:9100/healthz"
    assert healthcheck.url(ready=True) == "http://127.0.0.1:9100/readyz"
