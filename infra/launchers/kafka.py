"""Apache Kafka 3.9 in KRaft mode, run straight from Maven Central jars (no tarball, no Docker)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from infra.launchers.process import ManagedProcess, ServiceStartError, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIBS_DIR = REPO_ROOT / ".cache" / "kafka-libs"
_KAFKA_DIR = Path(__file__).resolve().parents[1] / "kafka"
_VERSION_LINE = re.compile(r"Kafka version: (\S+)")


def _random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass(frozen=True)
class SaslSslListener:
    """An additional SASL_SSL listener (what managed Kafka services offer): TLS with the given
    PEM certificate chain and unencrypted PKCS#8 key, SCRAM-SHA-512 users created at format time
    by Kafka's own StorageTool (`--add-scram`)."""

    certificate_chain_pem: str
    private_key_pem: str
    scram_users: dict[str, str] = field(default_factory=dict)  # name -> password
    mechanism: str = "SCRAM-SHA-512"


def _property_value(text: str) -> str:
    """A multi-line value on one line of a .properties file (java.util.Properties escapes)."""
    return text.strip().replace("\\", "\\\\").replace("\n", "\\n")


class KafkaBroker:
    """A single-node broker+controller on two free loopback ports, data in `workdir`; with
    `sasl_ssl`, a third port serves SASL_SSL (`sasl_bootstrap`) besides plain text."""

    def __init__(
        self,
        workdir: Path,
        *,
        libs_dir: Path = DEFAULT_LIBS_DIR,
        message_max_bytes: int = 1_048_588,
        heap: str = "512m",
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        self.workdir = workdir
        self.sasl_ssl = sasl_ssl
        self.sasl_port = 0
        self.libs_dir = libs_dir
        self.message_max_bytes = message_max_bytes
        self.heap = heap
        self.cluster_id = _random_cluster_id()
        self.port = 0
        self.controller_port = 0
        self._process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_SSL listener's host:port (only with `sasl_ssl`)."""
        if self.sasl_ssl is None:
            raise ValueError("this broker has no SASL_SSL listener")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def version(self) -> str | None:
        """The version the broker printed at start (AppInfoParser's 'Kafka version' line)."""
        if self._process is None:
            return None
        match = _VERSION_LINE.search(self._process.log_path.read_text(errors="replace"))
        return match.group(1) if match else None

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise ServiceStartError("kafka: `java` is not on PATH (Java 17 is needed)")
        if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            raise ServiceStartError(
                f"kafka: no broker jars in {self.libs_dir}; run `make kafka-libs` to fetch them"
            )
        return java

    def _write_properties(self, controller_port: int) -> Path:
        data_dir = self.workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            # Topics are declared by the application (infra.kafka_admin), never created by accident.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            # 50 partitions (the default) makes the first consumer-group join slow on two cores.
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(self.message_max_bytes),
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.check.interval.ms": "60000",
        }
        if self.sasl_ssl is not None:
            props.update(self._sasl_ssl_properties(self.sasl_ssl))
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        return path

    def _sasl_ssl_properties(self, listener: SaslSslListener) -> dict[str, str]:
        endpoint = f"SASL_SSL://127.0.0.1:{self.sasl_port}"
        mechanism = listener.mechanism.lower()
        return {
            "listeners": f"{endpoint},PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},{endpoint}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": listener.mechanism,
            f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            # PEM given inline: an unencrypted key is only accepted this way, not as a file.
            "ssl.keystore.type": "PEM",
            "ssl.keystore.certificate.chain": _property_value(listener.certificate_chain_pem),
            "ssl.keystore.key": _property_value(listener.private_key_pem),
            "ssl.client.auth": "none",
        }

    def _scram_arguments(self) -> list[str]:
        if self.sasl_ssl is None:
            return []
        mechanism = self.sasl_ssl.mechanism
        return [
            argument
            for name, password in self.sasl_ssl.scram_users.items()
            for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]

    def start(self, timeout_s: float = 90.0) -> None:
        """Format storage, start the JVM, return once the broker answers a metadata request."""
        java = self._java()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.controller_port = free_port()
        if self.sasl_ssl is not None:
            self.sasl_port = free_port()
        properties = self._write_properties(controller_port=self.controller_port)
        formatted = subprocess.run(
            [
                *self._jvm(java),
                "kafka.tools.StorageTool",
                "format",
                # `=` form: an id may start with '-', which argparse would take for an option.
                f"--cluster-id={self.cluster_id}",
                "-c",
                str(properties),
                *self._scram_arguments(),  # SCRAM users are metadata records, written here
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if formatted.returncode != 0:
            raise ServiceStartError(
                f"kafka: storage format failed ({formatted.returncode}):\n"
                f"{formatted.stdout}\n{formatted.stderr}"
            )
        self._launch(java, properties, timeout_s)

    def restart(self, timeout_s: float = 90.0) -> None:
        """Start again after `stop()` on the same ports and data: what an outage looks like to
        clients (they reconnect to the address they know and find their topics and offsets)."""
        if not self.port:
            raise ServiceStartError("kafka: restart() needs an earlier start()")
        self.stop()
        properties = self.workdir / "server.properties"
        self._launch(self._java(), properties, timeout_s)

    def _jvm(self, java: str) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseSerialGC",  # two cores: a parallel collector only competes with the tests
            "-XX:TieredStopAtLevel=1",  # the C1 compiler alone halves start-up time here
            f"-Dlog4j.configuration=file:{_KAFKA_DIR / 'log4j.properties'}",
            "-cp",
            f"{self.libs_dir}/*",
        ]

    def _launch(self, java: str, properties: Path, timeout_s: float) -> None:
        self._process = ManagedProcess(
            "kafka", [*self._jvm(java), "kafka.Kafka", str(properties)], self.workdir / "kafka.log"
        )
        self._process.start(self._answers_metadata, timeout_s=timeout_s, poll_s=0.5)

    def _answers_metadata(self) -> bool:
        return probe_cluster_id(self.bootstrap) == self.cluster_id

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()


def probe_cluster_id(bootstrap: str) -> str | None:
    """Ask a broker for its cluster id from synchronous code, even inside a running event loop.

    The probe gets a thread and a loop of its own, because launchers are started from pytest
    fixtures that may already run inside an event loop.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="kafka-probe") as pool:
        return pool.submit(lambda: asyncio.run(_cluster_id(bootstrap))).result()


async def _cluster_id(bootstrap: str) -> str | None:
    """The cluster id in a broker's metadata response (None until a broker is registered)."""
    from aiokafka.admin import AIOKafkaAdminClient

    # Refused connections are the expected answer while the broker starts: keep them out of the log.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        described = await admin.describe_cluster()
        return described["cluster_id"] if described["brokers"] else None
    finally:
        await admin.close()
        client_log.setLevel(level)
