"""How every Kafka client of the system authenticates: one place builds the TLS context and SASL
parameters from Settings, and one probe tells a wrong password from a broker that is down.

Every aiokafka producer, consumer and admin client takes `**kafka_client_kwargs(settings)`; the
Faust app gets the same context and credentials as `broker_credentials` (streams.app). aiokafka
itself reports a rejected password only in a log line and then "Unable to bootstrap", and a
Faust worker would go on retrying: `verify_kafka_access` opens one connection per bootstrap
server, authenticates, and raises `KafkaAccessError` naming the settings to fix.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from core.config import ENV_PREFIX, Settings

_CREDENTIALS = f"{ENV_PREFIX}KAFKA_SASL_USERNAME / {ENV_PREFIX}KAFKA_SASL_PASSWORD"


class KafkaAccessError(KafkaError):
    """The broker answers but refuses this client: wrong password, mechanism or certificate.
    The message names the settings to fix; retrying cannot help."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None otherwise): the configured CA file, else the
    system's trusted CAs; the client certificate when set; host names checked."""
    if not uses_tls(settings):
        return None
    cafile = settings.kafka_ssl_cafile
    certfile = settings.kafka_ssl_certfile
    keyfile = settings.kafka_ssl_keyfile
    return create_ssl_context(
        cafile=str(cafile) if cafile else None,
        certfile=str(certfile) if certfile else None,
        keyfile=str(keyfile) if keyfile else None,
    )


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if uses_sasl(settings):
        assert settings.kafka_sasl_password is not None  # Settings requires it with SASL_*
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


async def verify_kafka_access(settings: Settings, timeout_s: float = 10.0) -> None:
    """Authenticate once against the bootstrap servers, within `timeout_s` in all.

    Raises `KafkaAccessError` when a broker refused the credentials, the mechanism or the TLS
    handshake. Returns when one accepted this client, and also when none could be reached: a
    broker that is down is not a configuration error, clients reconnect. PLAINTEXT has nothing a
    broker could refuse: no connection is made."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    kwargs = kafka_client_kwargs(settings)
    refused: KafkaAccessError | None = None
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.rpartition(":")
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            async with asyncio.timeout(left):
                conn = await create_conn(
                    host, int(port), request_timeout_ms=int(left * 1000), **kwargs
                )
        except (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError) as exc:
            refused = KafkaAccessError(
                f"Kafka at {server} rejected the SASL credentials of user "
                f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): check "
                f"{_CREDENTIALS} (broker: {_reason(exc)})"
            )
        except UnsupportedSaslMechanismError as exc:
            refused = KafkaAccessError(
                f"Kafka at {server} does not offer {ENV_PREFIX}KAFKA_SASL_MECHANISM="
                f"{settings.kafka_sasl_mechanism}: {_reason(exc)}"
            )
        except ssl.SSLCertVerificationError as exc:
            refused = KafkaAccessError(
                f"the TLS certificate of Kafka at {server} is not trusted: check "
                f"{ENV_PREFIX}KAFKA_SSL_CAFILE ({exc.verify_message or exc})"
            )
        except ssl.SSLError as exc:
            refused = KafkaAccessError(
                f"TLS handshake with Kafka at {server} failed: check "
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL and {ENV_PREFIX}KAFKA_SSL_* ({exc})"
            )
        except (OSError, TimeoutError, KafkaError):
            continue  # this server is down or unreachable: try the next one
        else:
            conn.close()
            return
    if refused is not None:
        raise refused


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text or type(exc).__name__
