"""Where `mugpos login` keeps the API's address and the caller's token or key.

One JSON file, `credentials.json`, in the user's config folder (`$XDG_CONFIG_HOME/mugpos` or
`~/.config/mugpos` on Linux; `MUGPOS_CONFIG_DIR` overrides), readable by its owner only (0600 in a
0700 folder): it holds a bearer token or an API key. The environment wins over the file, so that
scripts and CI need no file at all: `MUGPOS_API_URL`, `MUGPOS_API_KEY`, `MUGPOS_API_TOKEN`.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import BaseModel

DEFAULT_URL = "http://127.0.0.1:8000"
FILE_NAME = "credentials.json"


class Credentials(BaseModel):
    url: str = DEFAULT_URL
    token: str | None = None
    expires_at: datetime | None = None
    username: str | None = None
    api_key: str | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


def config_dir() -> Path:
    override = os.environ.get("MUGPOS_CONFIG_DIR")
    return Path(override) if override else Path(click.get_app_dir("mugpos"))


def credentials_path() -> Path:
    return config_dir() / FILE_NAME


def load() -> Credentials:
    """The stored credentials (empty when there are none), with the environment's on top."""
    path = credentials_path()
    stored = Credentials.model_validate_json(path.read_bytes()) if path.is_file() else Credentials()
    updates: dict[str, object] = {}
    if url := os.environ.get("MUGPOS_API_URL"):
        updates["url"] = url
    if key := os.environ.get("MUGPOS_API_KEY"):
        updates |= {"api_key": key, "token": None, "expires_at": None}
    elif token := os.environ.get("MUGPOS_API_TOKEN"):
        updates |= {"token": token, "expires_at": None, "api_key": None}
    return stored.model_copy(update=updates)


def save(credentials: Credentials) -> Path:
    """Write atomically, created 0600 (never briefly readable by others), folder 0700."""
    folder = config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".credentials-")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(credentials.model_dump_json(indent=2, exclude_none=True).encode())
            handle.flush()
            os.fsync(handle.fileno())
        target = folder / FILE_NAME
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def forget() -> bool:
    """Remove the stored credentials; False when there were none."""
    path = credentials_path()
    if not path.is_file():
        return False
    path.unlink()
    return True
