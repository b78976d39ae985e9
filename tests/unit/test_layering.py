"""The layering rule of DEVELOPERS.md, checked on every import of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each package may import from the project (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "core": {"schemas"},
    "infra": {"schemas", "core"},
    "streams": {"schemas", "core", "infra"},
    "agents": {"schemas", "core", "infra", "streams"},
    "api": {"schemas", "core", "infra"},
    # The SDK: it talks to the API over HTTP only, so it can be used (and shipped) on its own.
    "mugpos": {"schemas"},
    "control": {"schemas", "core", "infra", "streams", "agents", "api", "mugpos"},
}
# core stays pure: no transport, database or web client.
CORE_FORBIDDEN = {
    "aiokafka",
    "faust",
    "kafka",
    "motor",
    "pymongo",
    "redis",
    "boto3",
    "botocore",
    "fastapi",
    "starlette",
    "httpx",
    "requests",
    "uvicorn",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_imports(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    ours = set(ALLOWED)
    violations = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in files
        if (bad := (_imports(path) & ours) - ALLOWED[package] - {package})
    }
    assert violations == {}


def test_core_imports_no_io_clients() -> None:
    violations = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in sorted((ROOT / "core").rglob("*.py"))
        if (bad := _imports(path) & CORE_FORBIDDEN)
    }
    assert violations == {}


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from infra.mongo import x\nimport core.config\nfrom . import y\n")
    assert _imports(module) == {"infra", "core"}
