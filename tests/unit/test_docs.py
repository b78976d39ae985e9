"""README must stay true to the code it documents."""

from __future__ import annotations

from pathlib import Path

from core.config import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting() -> None:
    readme = README.read_text()
    missing = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"| `{ENV_PREFIX}{name.upper()}` |" not in readme
    ]
    assert missing == []


def test_readme_names_both_commands() -> None:
    readme = README.read_text()
    assert "### `make demo`" in readme
    assert "### `make test`" in readme
