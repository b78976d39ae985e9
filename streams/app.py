"""The Faust application and its topics, configured from Settings.

Faust settings follow platform-notes: short session/heartbeat timeouts so a worker is
ready in seconds, no leader topic, no topic declaration by Faust (infra.provision declares every
topic with the right partitions and retention), raw bytes in and out (our own JSON contracts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.types.auth import CredentialsT

from core.config import Settings
from infra.kafka_security import kafka_ssl_context, uses_sasl
from schemas.topics import STAGE_MESSAGE_MAX_BYTES, TopicNames


def create_app(
    settings: Settings, *, datadir: Path, web_port: int, group: str | None = None
) -> faust.App:
    """The Faust app of a worker; `group`: its role's consumer group (agents.pipeline.consumer_group;
    default: the fused workers')."""
    brokers = [f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")]
    app = faust.App(
        group or TopicNames(settings.topic_prefix).pipeline_group,
        broker=brokers,
        broker_credentials=broker_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        # How long the group waits for members to rejoin: a member first finishes and commits
        # what it holds (agents.pipeline, SETTLE_S), so the next owner does not redo it. A dead
        # member is still noticed after the 6 s session timeout.
        broker_rebalance_timeout=30,
        broker_commit_interval=settings.commit_interval_s,
        # Inputs a stage gave back (rewound during an outage) are never acknowledged: Faust must
        # not wait for them before a rebalance; agents.pipeline settles what is in hand instead.
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=STAGE_MESSAGE_MAX_BYTES,
        consumer_max_fetch_size=STAGE_MESSAGE_MAX_BYTES,
        web_enabled=False,
        web_port=web_port,
        web_host="127.0.0.1",
        datadir=str(datadir),
    )
    _fetch_wait(app, settings.fetch_max_wait_ms)
    return app


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """TLS and SASL as every other client of the system (infra.kafka_security), in Faust's form:
    Faust turns these back into aiokafka's security_protocol, ssl_context and sasl_* arguments for
    its consumer and producer (faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth)."""
    context = kafka_ssl_context(settings)
    if uses_sasl(settings):
        assert settings.kafka_sasl_password is not None  # Settings requires it with SASL_*
        # With an ssl_context the protocol is SASL_SSL, without one SASL_PLAINTEXT.
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _fetch_wait(app: faust.App, max_wait_ms: int) -> None:
    """Faust builds its aiokafka consumer with a fixed 1,500 ms fetch wait and no option for it;
    the consumer reads the value when it starts, so it is set on the new consumer before that."""
    thread = app.consumer._thread
    create = thread._create_worker_consumer

    def create_worker_consumer(transport: Any) -> Any:
        consumer = create(transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    thread._create_worker_consumer = create_worker_consumer


def topics(app: faust.App, settings: Settings) -> dict[str, faust.TopicT]:
    names = TopicNames(settings.topic_prefix)
    return {
        key: app.topic(name, key_type=bytes, value_type=bytes)
        for key, name in (
            ("images", names.images),
            ("uploads", names.uploads),
            ("prepared", names.prepared),
            ("detected", names.detected),
        )
    }
