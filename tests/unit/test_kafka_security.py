"""Kafka security settings: consistent combinations only, errors naming the variable, and the one
builder of client arguments that every Kafka client (and the Faust app) uses."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import faust
import pytest

from core.config import ConfigError, Settings, load_settings, settings_env
from infra.kafka_security import (
    KafkaAccessError,
    kafka_client_kwargs,
    verify_kafka_access,
)
from streams.app import broker_credentials


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    return tmp_path


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA file, and a client certificate with its key, generated for this test."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mugpos-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca, certfile, keyfile = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca.write_bytes(cert.public_bytes(pem))
    certfile.write_bytes(cert.public_bytes(pem))
    keyfile.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca, certfile, keyfile


SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "svc",
    "kafka_sasl_password": "s3cret-pw",
}


def _error(**fields: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, **fields)
    return str(caught.value)


def test_default_is_plaintext_without_credentials() -> None:
    settings = load_settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_client_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(settings) is None


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_needs_mechanism_username_and_password(protocol: str) -> None:
    message = _error(kafka_security_protocol=protocol)
    for variable in ("MECHANISM", "USERNAME", "PASSWORD"):
        assert f"MUGPOS_KAFKA_SASL_{variable}: required when " in message
    assert f"MUGPOS_KAFKA_SECURITY_PROTOCOL is {protocol}" in message


def test_sasl_settings_without_a_sasl_protocol_are_refused() -> None:
    message = _error(kafka_sasl_username="svc", kafka_sasl_password="pw")
    assert "MUGPOS_KAFKA_SASL_USERNAME: only used with" in message
    assert "MUGPOS_KAFKA_SASL_PASSWORD: only used with" in message


def test_unknown_protocol_and_mechanism_name_the_variable() -> None:
    assert "MUGPOS_KAFKA_SECURITY_PROTOCOL: " in _error(kafka_security_protocol="TLS")
    message = _error(**(SASL | {"kafka_sasl_mechanism": "GSSAPI"}))
    assert "MUGPOS_KAFKA_SASL_MECHANISM: " in message
    assert "SCRAM-SHA-512" in message


def test_empty_password_counts_as_unset() -> None:
    assert "MUGPOS_KAFKA_SASL_PASSWORD: required" in _error(**(SASL | {"kafka_sasl_password": ""}))


def test_values_are_read_from_the_environment_case_insensitively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MUGPOS_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
    monkeypatch.setenv("MUGPOS_KAFKA_SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("MUGPOS_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("MUGPOS_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("MUGPOS_KAFKA_SSL_CAFILE", "")  # blank: unset
    settings = load_settings()
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert settings.kafka_ssl_cafile is None


def test_ssl_files_must_exist(tmp_path: Path) -> None:
    message = _error(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "missing.pem")
    assert "MUGPOS_KAFKA_SSL_CAFILE: no such file" in message


def test_ssl_files_need_a_tls_protocol(pem_files: tuple[Path, Path, Path]) -> None:
    ca, _, _ = pem_files
    message = _error(kafka_ssl_cafile=ca)
    assert "MUGPOS_KAFKA_SSL_CAFILE: only used with" in message
    assert "SSL or SASL_SSL (it is PLAINTEXT)" in message


def test_keyfile_needs_certfile(pem_files: tuple[Path, Path, Path]) -> None:
    _, _, key = pem_files
    message = _error(kafka_security_protocol="SSL", kafka_ssl_keyfile=key)
    assert "MUGPOS_KAFKA_SSL_KEYFILE: needs MUGPOS_KAFKA_SSL_CERTFILE" in message


def test_password_is_secret_in_dumps_and_passed_on_to_children() -> None:
    settings = load_settings(_env_file=None, **SASL)
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in str(settings.safe_dump())
    assert settings_env(settings)["MUGPOS_KAFKA_SASL_PASSWORD"] == "s3cret-pw"


def test_sasl_ssl_kwargs_carry_a_verifying_tls_context(
    pem_files: tuple[Path, Path, Path],
) -> None:
    ca, certfile, keyfile = pem_files
    settings = load_settings(
        _env_file=None,
        **SASL,
        kafka_ssl_cafile=ca,
        kafka_ssl_certfile=certfile,
        kafka_ssl_keyfile=keyfile,
    )
    kwargs = kafka_client_kwargs(settings)
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret-pw",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 1  # the configured CA only


def test_ssl_without_cafile_uses_the_system_cas() -> None:
    settings = load_settings(_env_file=None, kafka_security_protocol="SSL")
    kwargs = kafka_client_kwargs(settings)
    assert kwargs["security_protocol"] == "SSL"
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in kwargs


def test_sasl_plaintext_has_no_tls_context() -> None:
    settings = load_settings(
        _env_file=None, **(SASL | {"kafka_security_protocol": "SASL_PLAINTEXT"})
    )
    kwargs = kafka_client_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert "ssl_context" not in kwargs


def test_faust_gets_the_same_credentials(pem_files: tuple[Path, Path, Path]) -> None:
    """What Faust hands to aiokafka (its own conversion) equals what our clients get."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    ca, _, _ = pem_files
    sasl_ssl = load_settings(_env_file=None, **SASL, kafka_ssl_cafile=ca)
    credentials = broker_credentials(sasl_ssl)
    assert isinstance(credentials, faust.SASLCredentials)
    auth = dict(credentials_to_aiokafka_auth(credentials))
    ours = kafka_client_kwargs(sasl_ssl)
    assert isinstance(auth.pop("ssl_context"), ssl.SSLContext)
    ours.pop("ssl_context")
    assert auth == ours

    plain_sasl = load_settings(
        _env_file=None, **(SASL | {"kafka_security_protocol": "SASL_PLAINTEXT"})
    )
    auth = dict(credentials_to_aiokafka_auth(broker_credentials(plain_sasl)))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["ssl_context"] is None

    tls = load_settings(_env_file=None, kafka_security_protocol="SSL", kafka_ssl_cafile=ca)
    credentials = broker_credentials(tls)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_the_faust_app_is_built_with_them(tmp_path: Path) -> None:
    from streams.app import create_app

    settings = load_settings(
        _env_file=None, **(SASL | {"kafka_security_protocol": "SASL_PLAINTEXT"})
    )
    app = create_app(settings, datadir=tmp_path / "faust", web_port=6099)
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)
    assert app.conf.broker_credentials.username == "svc"


def test_verify_skips_plaintext_and_tolerates_a_broker_that_is_down() -> None:
    from infra.launchers import free_port

    asyncio.run(verify_kafka_access(Settings(_env_file=None)))  # no connection at all
    down = load_settings(
        _env_file=None,
        **(SASL | {"kafka_security_protocol": "SASL_PLAINTEXT"}),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
    )
    asyncio.run(verify_kafka_access(down, timeout_s=2))  # unreachable is not refused


def test_access_error_is_a_kafka_error_with_a_plain_message() -> None:
    from aiokafka.errors import KafkaError

    error = KafkaAccessError("check MUGPOS_KAFKA_SASL_PASSWORD")
    assert isinstance(error, KafkaError)  # `mugpos` prints it as one line and exits 1
    assert str(error) == "check MUGPOS_KAFKA_SASL_PASSWORD"


def test_broker_launcher_writes_a_sasl_ssl_listener(tmp_path: Path) -> None:
    """The test harness's broker: PEM inline on one properties line, SCRAM users at format time."""
    from infra.launchers import KafkaBroker, SaslSslListener

    listener = SaslSslListener("-----BEGIN X-----\nAB\\C\n-----END X-----\n", "KEY", {"u": "pw"})
    broker = KafkaBroker(tmp_path, sasl_ssl=listener)
    broker.port, broker.controller_port, broker.sasl_port = 9001, 9002, 9003
    text = broker._write_properties(controller_port=9002).read_text()
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:9001,SASL_SSL://127.0.0.1:9003")
    assert props["ssl.keystore.certificate.chain"] == (
        "-----BEGIN X-----\\nAB\\\\C\\n-----END X-----"
    )
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert broker._scram_arguments() == ["--add-scram", "SCRAM-SHA-512=[name=u,password=pw]"]
    assert broker.sasl_bootstrap == "127.0.0.1:9003"
    with pytest.raises(ValueError, match="no SASL_SSL listener"):
        _ = KafkaBroker(tmp_path).sasl_bootstrap
