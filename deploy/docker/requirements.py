"""Write the runtime requirements of pyproject.toml as two pip requirement files, for the image's
dependency layer (Dockerfile): `torch.txt` (torch and torchvision, installed from the index the
target names: PyTorch's CPU index or PyPI's CUDA build) and `rest.txt` (everything else, PyPI).
The source is not needed for this, so the layer is rebuilt only when pyproject.toml changes."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

TORCH = {"torch", "torchvision"}


def split(pyproject: Path) -> tuple[list[str], list[str]]:
    requirements = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    torch, rest = [], []
    for requirement in requirements:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        (torch if name in TORCH else rest).append(requirement)
    return torch, rest


def main(pyproject: str, out: str) -> None:
    torch, rest = split(Path(pyproject))
    folder = Path(out)
    (folder / "torch.txt").write_text("\n".join(torch) + "\n")
    (folder / "rest.txt").write_text("\n".join(rest) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
