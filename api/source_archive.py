"""The running code as a tar.gz, so that a deployment offers its users the source (AGPL-3.0
section 13) without anyone publishing it first: the archive is made from the installed packages
themselves, which is what runs, modified or not."""

from __future__ import annotations

import gzip
import importlib
import io
import subprocess
import tarfile
from functools import cache
from importlib import metadata
from pathlib import Path

PROJECT = "mugpos"
# The project's packages (pyproject's [tool.setuptools.packages.find]).
PACKAGES = ("schemas", "core", "infra", "streams", "agents", "api", "control")
SOURCE_SUFFIXES = {".py", ".lark", ".toml", ".json", ".xml", ".properties", ".md"}
FIXED_MTIME = 0  # the same code gives the same bytes


def _packages_root() -> Path:
    return Path(importlib.import_module(PACKAGES[0]).__file__ or "").resolve().parent.parent


@cache
def source_archive() -> bytes:
    """Every source file of the project's packages, the licence, and the build description
    (pyproject.toml in a checkout, the distribution's METADATA when installed from a wheel)."""
    root = _packages_root()
    members: dict[str, bytes] = {}
    for name in PACKAGES:
        folder = root / name
        for path in sorted(folder.rglob("*")):
            if (
                path.is_file()
                and path.suffix in SOURCE_SUFFIXES
                and "__pycache__" not in path.parts
            ):
                members[path.relative_to(root).as_posix()] = path.read_bytes()
    if _is_checkout(root):  # in site-packages these names may belong to anything
        for extra in ("LICENSE", "pyproject.toml", "README.md"):
            if (root / extra).is_file():
                members[extra] = (root / extra).read_bytes()
    try:
        dist = metadata.distribution(PROJECT)
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or []:
            if file.name == "LICENSE" and "LICENSE" not in members:
                members["LICENSE"] = Path(str(dist.locate_file(file))).read_bytes()
        if "pyproject.toml" not in members and (text := dist.read_text("METADATA")):
            members["METADATA"] = text.encode()
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=FIXED_MTIME) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as archive,
    ):
        for member, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{PROJECT}/{member}")
            info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _is_checkout(root: Path) -> bool:
    """The packages run from the project's own source tree (its pyproject.toml beside them)."""
    pyproject = root / "pyproject.toml"
    return pyproject.is_file() and f'name = "{PROJECT}"' in pyproject.read_text()


def checkout_commit() -> str | None:
    """The commit of the checkout the packages run from, if they run from one (not from a
    wheel installed somewhere inside another repository's work tree)."""
    root = _packages_root()
    try:
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return top[1] if len(top) == 2 and Path(top[0]).resolve() == root else None
