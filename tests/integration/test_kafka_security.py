"""Secured Kafka end to end: a Kafka 3.9 broker of this module's own with a SASL_SSL listener
(a CA and broker certificate generated here, SCRAM-SHA-512 users created by Kafka's StorageTool),
a `mugpos worker` and the API configured for it through MUGPOS_KAFKA_* only, and a wrong password
that fails fast naming the settings.

The clients that feed and read the topics here are built by hand (aiokafka's own TLS helper and
SASL arguments), not through infra.kafka_security, so they check the code under test."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from control.cli import app
from core.config import Settings, settings_env
from infra.health import check_all
from infra.launchers import KafkaBroker, MotoS3Server, RedisServer, SaslSslListener, SecantusServer
from infra.provision import provision
from schemas.messages import AnalysisResult
from schemas.topics import TopicNames
from tests.conftest import _run, settings_for
from tests.integration.api_server import api_settings, login, start_api
from tests.integration.workers import WorkerProcess, scene_jpeg

USER = "mugpos-svc"
PASSWORD = f"pw-{uuid.uuid4().hex}"


def _certificates(folder: Path) -> tuple[Path, str, str]:
    """A self-signed CA (its PEM file, for the clients) and a broker certificate for 127.0.0.1
    and localhost signed by it (chain and unencrypted PKCS#8 key, for the broker)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mugpos test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    chain = (broker.public_bytes(pem) + ca.public_bytes(pem)).decode()
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    (folder / "broker.pem").write_text(chain)
    return ca_file, chain, private


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaBroker, Path]]:
    """A broker of this module only (the session's plain-text broker stays as it is)."""
    folder = tmp_path_factory.mktemp("kafka-sasl-ssl")
    ca_file, chain, key = _certificates(folder)
    listener = SaslSslListener(chain, key, scram_users={USER: PASSWORD})
    broker = KafkaBroker(folder / "broker", sasl_ssl=listener)
    for started in _run("kafka-sasl-ssl", broker):  # its log tail goes with a failure's report
        yield started, ca_file


def _secured_settings(
    base: Settings, broker: KafkaBroker, ca_file: Path, password: str = PASSWORD
) -> Settings:
    return Settings(
        _env_file=None,
        **base.model_dump()
        | {
            "kafka_bootstrap": broker.sasl_bootstrap,  # the SASL_SSL port only
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": USER,
            "kafka_sasl_password": password,
            "kafka_ssl_cafile": ca_file,
        },
    )


@pytest.fixture
def secured_settings(
    secured_kafka: tuple[KafkaBroker, Path],
    mongo_server: SecantusServer,
    redis_server: RedisServer,
    s3_server: MotoS3Server,
    unique_name: str,
) -> Settings:
    broker, ca_file = secured_kafka
    base = settings_for(unique_name, broker, mongo_server, redis_server, s3_server)
    return _secured_settings(base, broker, ca_file)


def _hand_built(settings: Settings) -> dict[str, object]:
    """SASL_SSL client arguments built here, independently of infra.kafka_security."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(settings.kafka_ssl_cafile)),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": USER,
        "sasl_plain_password": PASSWORD,
    }


async def _publish_and_read(settings: Settings, request_id: str, timeout_s: float) -> dict:
    topics = TopicNames(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        topics.results, auto_offset_reset="earliest", group_id=None, **_hand_built(settings)
    )
    producer = AIOKafkaProducer(**_hand_built(settings))
    await consumer.start()
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.images,
            scene_jpeg(71),
            headers=[("request-id", request_id.encode()), ("content-type", b"image/jpeg")],
        )
        async with asyncio.timeout(timeout_s):
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        result = orjson.loads(record.value)
                        if result.get("request_id") == request_id:
                            return result
    finally:
        await producer.stop()
        await consumer.stop()


def _cli(args: list[str], settings: Settings) -> tuple[int, str, float]:
    started = time.monotonic()
    env = {**settings_env(settings), "COLUMNS": "250"}
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.output, time.monotonic() - started


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.usefixtures("in_tmp")
def test_worker_and_api_over_sasl_ssl(secured_settings: Settings, tmp_path: Path) -> None:
    settings = secured_settings
    asyncio.run(provision(settings))  # admin client over SASL_SSL
    code, output, _ = _cli(["check"], settings)
    assert code == 0, output

    worker = WorkerProcess(settings, tmp_path, "worker")  # configured by MUGPOS_KAFKA_* only
    api = None
    try:
        api = start_api(api_settings(settings))
        # An image in through Kafka, its result out of the results topic.
        request_id = f"sasl-{uuid.uuid4().hex[:8]}"
        result = asyncio.run(_publish_and_read(settings, request_id, timeout_s=60))
        assert result["status"] == "ok", result
        # And through the API: its producer and result follower are on SASL_SSL too.
        uploaded = httpx.post(
            f"{api.url}/api/v1/analyze",
            headers=login(api, "analyst"),
            params={"wait": 30_000},
            data={"source_id": "secure-cam"},
            files={"image": ("scene.jpg", scene_jpeg(72), "image/jpeg")},
            timeout=60,
        )
        assert uploaded.status_code == 200, uploaded.text
        answer = AnalysisResult.model_validate(uploaded.json())
        assert answer.status == "ok"
        assert answer.source_id == "secure-cam"
        ready = httpx.get(f"{api.url}/ready", headers=login(api, "admin"), timeout=30)
        assert ready.status_code == 200, ready.text
    finally:
        if api is not None:
            api.stop()
        assert worker.stop() == 0


@pytest.mark.usefixtures("in_tmp")
def test_wrong_password_fails_fast_naming_the_settings(
    secured_settings: Settings, tmp_path: Path
) -> None:
    wrong = secured_settings.model_copy(update={"kafka_sasl_password": "not-the-password"})
    wrong = Settings(_env_file=None, **wrong.model_dump())

    # `mugpos check`: exit 1 within seconds, naming the variables to fix.
    code, output, took = _cli(["check", "--timeout", "5"], wrong)
    assert code == 1, output
    assert "MUGPOS_KAFKA_SASL_USERNAME" in output
    assert "MUGPOS_KAFKA_SASL_PASSWORD" in output
    assert took < 15, took

    # The API's readiness checks say the same.
    kafka = {c.name: c for c in asyncio.run(check_all(wrong, timeout_s=5))}["kafka"]
    assert not kafka.ok
    assert "MUGPOS_KAFKA_SASL_PASSWORD" in kafka.detail

    # A worker exits non-zero instead of retrying forever.
    worker = WorkerProcess(wrong, tmp_path, "wrong-password")
    try:
        code = worker.process.wait(timeout=60)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert code != 0, log
    assert "MUGPOS_KAFKA_SASL_PASSWORD" in log, log
