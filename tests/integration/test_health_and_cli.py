"""Health checks and the `mugpos` commands against the real services."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from control.cli import app
from core.config import Settings, settings_env
from infra.health import check_all
from infra.provision import provision
from schemas.topics import TopicNames


async def test_every_component_is_healthy(service_settings: Settings) -> None:
    from infra.object_store import S3ObjectStore

    store = S3ObjectStore.from_settings(service_settings)
    await store.ensure_bucket()
    await store.close()
    results = {r.name: r for r in await check_all(service_settings)}
    assert set(results) == {"kafka", "mongodb", "redis", "object_store"}
    assert all(r.ok for r in results.values()), results
    assert results["redis"].detail.startswith("redis ")


async def test_unreachable_components_are_reported_not_raised(unique_name: str) -> None:
    from infra.launchers import free_port

    dead = free_port()
    settings = Settings(
        _env_file=None,
        kafka_bootstrap=f"127.0.0.1:{dead}",
        mongodb_uri=f"mongodb://127.0.0.1:{dead}/?directConnection=true",
        redis_url=f"redis://127.0.0.1:{dead}/0",
        s3_endpoint_url=f"http://127.0.0.1:{dead}",
        s3_bucket=unique_name,
        s3_access_key_id="x",
        s3_secret_access_key="y",
    )
    results = {r.name: r for r in await check_all(settings, timeout_s=2)}
    assert {name for name, r in results.items() if not r.ok} == {
        "kafka",
        "mongodb",
        "redis",
        "object_store",
    }
    assert all(r.detail for r in results.values())


async def test_provision_is_idempotent(service_settings: Settings) -> None:
    first = await provision(service_settings)
    second = await provision(service_settings)
    topics = TopicNames(service_settings.topic_prefix)
    assert first[f"topic {topics.images}"] == "created"
    assert second[f"topic {topics.images}"] == "exists"
    assert second["object store"] == f"bucket {service_settings.s3_bucket} reachable"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("in_tmp")
def test_cli_setup_then_check(service_settings: Settings) -> None:
    runner = CliRunner()
    setup = runner.invoke(app, ["setup"], env=settings_env(service_settings))
    assert setup.exit_code == 0, setup.output
    assert "created" in setup.output
    check = runner.invoke(app, ["check"], env=settings_env(service_settings))
    assert check.exit_code == 0, check.output
    assert check.output.count("ok") >= 4


@pytest.mark.usefixtures("in_tmp")
def test_cli_check_fails_when_a_component_is_down(service_settings: Settings) -> None:
    env = {**settings_env(service_settings), "MUGPOS_S3_BUCKET": "missing-bucket-x"}
    result = CliRunner().invoke(app, ["check", "--timeout", "3"], env=env)
    assert result.exit_code == 1
    assert "failing" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_cli_bad_setting_exits_2_naming_the_variable() -> None:
    result = CliRunner().invoke(app, ["config"], env={"MUGPOS_DEVICE": "quantum"})
    assert result.exit_code == 2
    assert "MUGPOS_DEVICE" in result.output


@pytest.mark.usefixtures("in_tmp")
def test_cli_config_masks_secrets() -> None:
    env = {
        "MUGPOS_JWT_SECRET": "top-secret-jwt-0123456789abcdef-0123",
        "MUGPOS_REDIS_URL": "redis://:pw-secret@r:6379",
    }
    result = CliRunner().invoke(app, ["config"], env=env)
    assert result.exit_code == 0
    assert "top-secret-jwt" not in result.output
    assert "pw-secret" not in result.output
    assert "MUGPOS_JWT_SECRET" in result.output


def test_ready_without_redis_is_degraded_not_unready(deployment: Settings) -> None:
    """Redis is a cache: an API whose Redis is unreachable still serves (rate limits and caches
    fail open), so /ready answers 200 `degraded`, naming it."""
    import httpx

    from infra.launchers import free_port
    from tests.integration.api_server import api_settings, login, start_api

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    server = start_api(api_settings(deployment, redis_url=nowhere))
    try:
        anonymous = httpx.get(f"{server.url}/ready", timeout=30)
        # The checks (names, cluster ids) are for operators only.
        operator = httpx.get(f"{server.url}/ready", headers=login(server, "admin"), timeout=30)
    finally:
        server.stop()
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "degraded"}
    assert operator.status_code == 200
    body = operator.json()
    assert body["status"] == "degraded"
    assert [c["name"] for c in body["checks"] if not c["ok"]] == ["redis"]
