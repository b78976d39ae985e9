"""What `mugpos login` stores: owner-only, atomic, and overridden by the environment."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mugpos import credentials
from mugpos.client import Client


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MUGPOS_CONFIG_DIR", "MUGPOS_API_URL", "MUGPOS_API_KEY", "MUGPOS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path


def test_saved_owner_only_in_the_user_config_folder(config_home: Path) -> None:
    path = credentials.save(credentials.Credentials(url="http://127.0.0.1:1", token="t"))
    assert path == config_home / "mugpos" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert credentials.load().token == "t"
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temp file left


def test_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials.save(credentials.Credentials(url="http://127.0.0.1:1", token="stored"))
    monkeypatch.setenv("MUGPOS_API_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("MUGPOS_API_KEY", "key")
    loaded = credentials.load()
    assert (loaded.url, loaded.api_key, loaded.token) == ("http://127.0.0.1:2", "key", None)
    assert Client.from_login().headers == {"X-API-Key": "key"}


def test_an_expired_token_is_not_sent() -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    credentials.save(credentials.Credentials(token="old", expires_at=past))
    assert credentials.load().expired
    assert Client.from_login().headers == {}


def test_forget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUGPOS_CONFIG_DIR", str(tmp_path / "elsewhere"))
    assert credentials.forget() is False
    credentials.save(credentials.Credentials(api_key="k"))
    assert (tmp_path / "elsewhere" / "credentials.json").is_file()
    assert credentials.forget() is True
    assert credentials.load() == credentials.Credentials()
