"""Settings: defaults, env prefix, .env files, and errors that name the variable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.config import ConfigError, Settings, load_settings, redact_url


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    return tmp_path


def test_defaults_are_usable() -> None:
    settings = load_settings()
    assert settings.topic_prefix == "mugpos"
    assert settings.device == "auto"
    assert settings.redis_url is None
    assert settings.object_store == "s3"


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUGPOS_KAFKA_BOOTSTRAP", "k1:9092, k2:9093")
    monkeypatch.setenv("MUGPOS_DEVICE", "cuda:1")
    monkeypatch.setenv("MUGPOS_TOPIC_PARTITIONS", "12")
    settings = load_settings()
    assert settings.kafka_bootstrap == "k1:9092,k2:9093"
    assert settings.device == "cuda:1"
    assert settings.topic_partitions == 12


def test_reads_dotenv_file(workdir: Path) -> None:
    (workdir / ".env").write_text("MUGPOS_TOPIC_PREFIX=site-a\nMUGPOS_MONGODB_DB=site_a\n")
    settings = load_settings()
    assert (settings.topic_prefix, settings.mongodb_db) == ("site-a", "site_a")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MUGPOS_DEVICE", "gpu", "auto, cpu, cuda or cuda:N"),
        ("MUGPOS_KAFKA_BOOTSTRAP", "localhost", "not host:port"),
        ("MUGPOS_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("MUGPOS_TOPIC_PREFIX", "bad prefix!", "letters, digits"),
        ("MUGPOS_MONGODB_URI", "postgres://x", "mongodb://"),
        ("MUGPOS_REDIS_URL", "http://x", "redis://"),
        ("MUGPOS_S3_ENDPOINT_URL", "r2.example", "http(s) URL"),
        ("MUGPOS_S3_BUCKET", "Bad_Bucket", "valid bucket name"),
        ("MUGPOS_LOG_LEVEL", "LOUD", "DEBUG"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{variable}: " in message
    assert expected in message


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUGPOS_DEVICE", "tpu")
    monkeypatch.setenv("MUGPOS_S3_BUCKET", "x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "MUGPOS_DEVICE" in str(caught.value)
    assert "MUGPOS_S3_BUCKET" in str(caught.value)


def test_object_store_must_not_be_a_file(workdir: Path) -> None:
    (workdir / "afile").write_text("x")
    with pytest.raises(ConfigError, match="MUGPOS_OBJECT_STORE"):
        load_settings(object_store=str(workdir / "afile"))
    assert load_settings(object_store=str(workdir / "objs")).uses_local_object_store


SECRETS = {
    "MUGPOS_JWT_SECRET": "jwt-very-secret-value-0123456789abcdef",
    "MUGPOS_S3_SECRET_ACCESS_KEY": "s3-very-secret-value",
    "MUGPOS_MONGODB_URI": "mongodb://app:mongo-very-secret@db:27017",
    "MUGPOS_REDIS_URL": "redis://:redis-very-secret@cache:6379/0",
}


def test_secrets_stay_out_of_repr_dump_and_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == SECRETS["MUGPOS_JWT_SECRET"]
    dumped = settings.safe_dump()
    with caplog.at_level(logging.INFO):
        logging.getLogger("mugpos.test").info("settings %s %r", dumped, settings)
    for text in (repr(settings), str(settings), str(dumped), caplog.text):
        for secret in (
            "jwt-very-secret",
            "s3-very-secret",
            "mongo-very-secret",
            "redis-very-secret",
        ):
            assert secret not in text
    assert dumped["MUGPOS_MONGODB_URI"] == "mongodb://app:***@db:27017"
    assert dumped["MUGPOS_JWT_SECRET"] == "**********"


def test_error_message_does_not_echo_a_bad_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUGPOS_MONGODB_URI", "mysql://root:hunter2-secret@db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2-secret" not in str(caught.value)


def test_safe_dump_lists_every_field_by_variable_name() -> None:
    dumped = Settings(_env_file=None).safe_dump()
    assert set(dumped) == {f"MUGPOS_{name.upper()}" for name in Settings.model_fields}


def test_redact_url_leaves_urls_without_password_alone() -> None:
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert redact_url("redis://u:p@cache:6379/0") == "redis://u:***@cache:6379/0"


def test_settings_env_reproduces_the_settings(monkeypatch) -> None:
    from core.config import settings_env

    original = Settings(
        _env_file=None,
        jwt_secret="j" * 40,
        redis_url="redis://127.0.0.1:1/0",
        cors_origins=["https://ops.example"],
        class_map={"mug": ["cup"]},
        max_batch=3,
    )
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == original
