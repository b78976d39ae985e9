"""`/api/v1/about`: the AGPL-3.0 offer of the source to every user of the API, anonymously."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from tests.integration.api_server import ApiServer, api_settings, start_api

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def published_api(deployment: Settings) -> Iterator[ApiServer]:
    """An API whose operator publishes the source elsewhere and names the commit."""
    settings = api_settings(
        deployment, source_url="https://example.org/mugpos.git", source_commit="abc123"
    )
    server = start_api(settings)
    try:
        yield server
    finally:
        server.stop()


def test_about_names_the_licence_and_offers_the_running_source(api: ApiServer) -> None:
    reply = httpx.get(f"{api.url}/api/v1/about")  # no credentials
    assert reply.status_code == 200, reply.text
    about = reply.json()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert about == {
        "name": "mugpos",
        "version": "0.1.0",
        "commit": head,
        "licence": "AGPL-3.0-or-later",
        "source_url": "/api/v1/about/source",
    }
    archive = httpx.get(f"{api.url}{about['source_url']}")
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = set(tar.getnames())
        about_source = tar.extractfile("mugpos/api/routes/about.py")
        licence = tar.extractfile("mugpos/LICENSE")
        assert about_source is not None
        assert licence is not None
        assert about_source.read() == (ROOT / "api/routes/about.py").read_bytes()
        assert b"GNU AFFERO GENERAL PUBLIC LICENSE" in licence.read()
    assert {"mugpos/core/rules/grammar.lark", "mugpos/pyproject.toml"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pt", ".pyc"))]


def test_about_follows_the_operators_settings(published_api: ApiServer) -> None:
    about = httpx.get(f"{published_api.url}/api/v1/about").json()
    assert about["source_url"] == "https://example.org/mugpos.git"
    assert about["commit"] == "abc123"
