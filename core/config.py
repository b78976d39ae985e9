"""One validated configuration for every process, read from `MUGPOS_*` variables and `.env`.

A bad value stops the process at start with a message naming the variable, instead of failing
later deep inside a client library.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.models.class_map import check_roles
from core.models.manifest import DEFAULT_MODEL

ENV_PREFIX = "MUGPOS_"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_RATE = re.compile(r"^\d+/(second|minute|hour|day)$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

PositiveInt = Annotated[int, Field(ge=1)]


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names each bad variable."""


class Settings(BaseSettings):
    """Every setting of the system. Field `x` is read from `MUGPOS_X`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Kafka
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    topic_prefix: str = Field("mugpos", description="Prefix of every topic name.")
    topic_partitions: PositiveInt = Field(
        6, description="Partitions of each declared topic; the ceiling on parallel workers."
    )
    topic_replication: PositiveInt = Field(1, description="Replication factor of each topic.")
    topic_retention_ms: PositiveInt = Field(
        7 * 24 * 3600 * 1000, description="Retention of the data topics in milliseconds."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client connects: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or "
        "SASL_SSL (TLS + SASL, what managed Kafka services use).",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; required with SASL_PLAINTEXT and SASL_SSL."
    )
    kafka_sasl_username: str | None = Field(
        None, description="SASL user name; required with SASL_PLAINTEXT and SASL_SSL."
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (secret); required with SASL_PLAINTEXT and SASL_SSL."
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL, "
        "SASL_SSL); unset: the system's trusted CAs.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (SSL, SASL_SSL)."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate; needs the certfile."
    )

    # MongoDB
    mongodb_uri: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017"),
        description="MongoDB connection string (may hold credentials, so it is secret).",
    )
    mongodb_db: str = Field("mugpos", min_length=1, description="Database name.")

    # Redis
    redis_url: SecretStr | None = Field(
        None, description="Redis URL; unset runs without the shared cache (embedded demo)."
    )

    # Object store
    object_store: str = Field(
        "s3", description="`s3` for S3/R2 (boto3), or a local directory path."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com."
    )
    s3_bucket: str = Field("mugpos", description="Bucket holding uploads, results and models.")
    s3_region: str = Field("auto", description="Region name; R2 uses `auto`.")
    s3_access_key_id: str | None = Field(None, description="Access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret access key.")

    # Models and devices
    model: str = Field(
        DEFAULT_MODEL, description="Detector to serve, as `name:version` or `name:latest`."
    )
    model_dir: Path | None = Field(None, description="Local directory searched first for models.")
    model_cache_dir: Path = Field(
        Path("~/.cache/mugpos/models"), description="Where models from the object store are kept."
    )
    device: str = Field("auto", description="`auto`, `cpu`, `cuda` or `cuda:N`.")
    detector_backend: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="`torch` (.pt), `onnx` (ONNX Runtime) or `auto` (torch on CUDA, else onnx).",
    )
    model_memory_budget_mb: PositiveInt = Field(
        2048, description="Memory for loaded model versions on CPU (on CUDA: 80% of the device)."
    )
    confidence_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Minimum detection confidence; unset uses the model's operating threshold.",
    )
    class_map: dict[str, list[str]] | None = Field(
        None,
        description="JSON: role -> model class names (roles: mug, coaster, table, hazard), for "
        "every model; unset: each model's own (its manifest's), else the built-in map.",
    )
    clip_model: str = Field("ViT-B-32", description="open_clip architecture for mug attributes.")
    clip_weights: Path | None = Field(
        None, description="Local CLIP checkpoint; unset disables CLIP attributes."
    )

    # Pipeline
    max_batch: PositiveInt = Field(8, description="Most images per inference batch.")
    max_wait_ms: PositiveInt = Field(
        50, description="Longest wait to fill an inference batch before running a partial one."
    )
    max_image_bytes: PositiveInt = Field(
        20 * 1024 * 1024, description="Largest accepted image file; larger inputs are rejected."
    )
    max_image_pixels: PositiveInt = Field(
        40_000_000, description="Largest accepted width x height (decompression bombs)."
    )
    privacy_blur: Literal["off", "faces"] = Field(
        "off",
        description="`faces`: faces are blurred in every kept original (so in annotated images "
        "too) before it is stored; the model still sees the unblurred picture in memory.",
    )
    result_cache_ttl_s: PositiveInt = Field(300, description="Redis TTL of stored results.")
    # Data lifecycle, applied by `mugpos setup` (and `mugpos gc` where the store has no lifecycle)
    result_retention_days: PositiveInt | None = Field(
        None,
        description="Days a result is kept: a TTL index on MongoDB's results and a lifecycle "
        "rule on `analysis-results/` (result.json, annotated images); unset: forever.",
    )
    original_retention_days: PositiveInt | None = Field(
        None,
        description="Days an original image is kept: a lifecycle rule on `user-uploads/`; "
        "unset: forever.",
    )
    keep_originals: Literal["all", "failures"] = Field(
        "all",
        description="`failures`: the original of a result that passes (no failed rule, no "
        "failing mug) is deleted once the result is stored; its `image.object_key` is null.",
    )
    alert_cooldown_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="Once an alert of a (source, rule, subject) is raised, it is not raised again "
        "for this long, even if it resolved meanwhile (a flapping mug alerts once).",
    )
    webhook_attempts: int = Field(
        6, ge=1, le=20, description="Tries per webhook delivery before it is dead-lettered."
    )
    webhook_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Longest one webhook request may take."
    )
    webhook_backoff_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="First wait between webhook tries; doubled each time with jitter, at most 60 s.",
    )
    webhook_allow_networks: list[str] = Field(
        default_factory=list,
        description='JSON list of networks (CIDR, e.g. ["10.1.0.0/16"]) webhooks may reach '
        "although they are private, loopback or link-local (refused by default: SSRF).",
    )
    fetch_max_wait_ms: PositiveInt = Field(
        100,
        le=1500,
        description="Longest a worker's fetch waits at the broker for new records. Kafka answers "
        "as soon as records arrive; some Kafka-compatible brokers (tansu, the demo's) hold every "
        "fetch this long, so it bounds each hop's latency there (Faust's own is 1,500 ms).",
    )
    commit_interval_s: float = Field(
        1.0,
        gt=0,
        le=600,
        description="Seconds between a worker's offset commits; a rebalance, a drain and a "
        "shutdown commit at once. Inputs done since the last commit are redone after a crash.",
    )

    # Control plane
    heartbeat_interval_s: float = Field(
        2.0, gt=0, le=60, description="Seconds between worker heartbeats; lost after two missed."
    )
    worker_http_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of the worker's HTTP endpoint (/healthz, /readyz, /metrics) for an "
        "orchestrator's probes and Prometheus; unset: none.",
    )
    worker_http_host: str = Field(
        "0.0.0.0",  # noqa: S104 - probes and scrapes come from outside the pod or container
        description="Address the worker's HTTP endpoint listens on.",
    )
    idle_shutdown_s: PositiveInt | None = Field(
        None, description="Drain and exit after this many seconds without input; unset: never."
    )
    gpu_price_per_hour: float = Field(
        0.0, ge=0, description="Price of one GPU hour, for the cost shown per worker."
    )
    scale_target_s: PositiveInt = Field(
        60, description="Backlog clearance time the scaling hint sizes inference workers for."
    )

    # API
    api_host: str = Field("127.0.0.1", description="Address `mugpos api` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `mugpos api` listens on.")
    jwt_secret: SecretStr | None = Field(
        None,
        description="HS256 signing key for API tokens (secret, >= 32 chars); the API needs it.",
    )
    jwt_issuer: str = Field("mugpos", description="`iss` claim of issued tokens, checked on use.")
    jwt_ttl_s: PositiveInt = Field(3600, description="Lifetime of an issued API token.")
    encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key encrypting sensitive stored fields such as e-mail (secret).",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="JSON list of browser origins allowed to call the API."
    )
    rate_limit: str = Field(
        "600/minute", description="Requests per authenticated user or API key, e.g. `600/minute`."
    )
    rate_limit_ip: str = Field("1200/minute", description="Requests per client IP address.")
    api_max_wait_ms: PositiveInt = Field(
        30_000, description="Longest `?wait=` an upload may ask for before getting its result."
    )
    api_max_batch_items: PositiveInt = Field(32, description="Most images in one batch upload.")
    api_max_request_bytes: PositiveInt = Field(
        64 * 1024 * 1024, description="Largest request body the API reads (413 above it)."
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For is "
        "believed; empty: the direct peer is the client.",
    )
    login_free_failures: PositiveInt = Field(
        5, description="Failed logins of one account from one IP before each retry is delayed."
    )
    login_delay_base_s: float = Field(
        1.0, gt=0, le=3600, description="First delay after the free failures; doubles each time."
    )
    login_delay_max_s: float = Field(
        900.0, gt=0, le=86400, description="Longest delay between login attempts of one account."
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token `/metrics` asks for (secret); unset: `/metrics` is open."
    )
    source_url: str | None = Field(
        None,
        description="Where users get this deployment's source (AGPL-3.0 section 13), shown by "
        "/api/v1/about; unset: the API serves the running code itself at /api/v1/about/source.",
    )
    source_commit: str | None = Field(
        None,
        description="The commit this deployment was built from (image builds set it); unset: "
        "read from git when running from a checkout.",
    )

    otel_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP endpoint traces are sent to (e.g. http://collector:4318; spans go "
        "to {endpoint}/v1/traces); unset with otel_file unset: tracing is off, nothing exported.",
    )
    otel_sample_ratio: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of traces started here that are recorded (parent-based: a caller's "
        "sampled traceparent is always followed, an unsampled one never).",
    )
    otel_file: Path | None = Field(
        None,
        description="Also write finished spans to this file as JSON lines (tests, the demo, "
        "debugging without a collector); turns tracing on like otel_endpoint.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every process."
    )
    driver_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description="Log level of the database, Kafka, Redis, S3 and HTTP client libraries; "
        "their DEBUG output quotes whole documents and requests, so `-v` leaves them alone.",
    )
    # --- observability: logs (infra.logging_setup) -------------------------------------------
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="How every process writes its log: `json` (one JSON object a line), "
        "`console` (human-readable lines) or `auto` (console on a terminal, else JSON).",
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",") if part.strip()]
        if not servers:
            raise ValueError("needs at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("topic_prefix")
    @classmethod
    def _check_topic_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-' (1-100 chars)")
        return value

    @field_validator(
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _kafka_security_blank_is_unset(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            if not value.strip():
                return "PLAINTEXT" if info.field_name == "kafka_security_protocol" else None
            if info.field_name == "kafka_security_protocol":
                return value.strip().upper().replace("-", "_")
            if info.field_name == "kafka_sasl_mechanism":
                return value.strip().upper()
        return value

    @field_validator("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _check_kafka_sasl(cls, value: object, info: ValidationInfo) -> object:
        protocol = info.data.get("kafka_security_protocol")
        if protocol is None:  # itself invalid, and reported as such
            return value
        if isinstance(value, SecretStr) and not value.get_secret_value():
            value = None
        if protocol.startswith("SASL_") and value is None:
            raise ValueError(f"required when {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is {protocol}")
        if not protocol.startswith("SASL_") and value is not None:
            raise ValueError(
                f"only used with {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL SASL_SSL or SASL_PLAINTEXT "
                f"(it is {protocol})"
            )
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _check_kafka_ssl_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        protocol = info.data.get("kafka_security_protocol")
        if protocol is not None and protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"only used with {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL "
                f"(it is {protocol})"
            )
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        if (
            info.field_name == "kafka_ssl_keyfile"
            and "kafka_ssl_certfile" in info.data
            and info.data["kafka_ssl_certfile"] is None
        ):
            raise ValueError(f"needs {ENV_PREFIX}KAFKA_SSL_CERTFILE, the certificate of this key")
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _check_mongodb_uri(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("object_store")
    @classmethod
    def _check_object_store(cls, value: str) -> str:
        if value != "s3" and Path(value).is_file():
            raise ValueError("must be `s3` or a directory path, not a file")
        if not value:
            raise ValueError("must be `s3` or a directory path")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://host:port")
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _check_bucket(cls, value: str) -> str:
        if not _BUCKET.match(value) or ".." in value:
            raise ValueError(
                "must be a valid bucket name: 3-63 lowercase letters, digits, '.', '-'"
            )
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        name, _, version = value.partition(":")
        if not name or not version:
            raise ValueError("must be name:version, e.g. mugdet-synth:1.0.0 or mugdet-synth:latest")
        return value

    @field_validator("model_cache_dir", "model_dir", "clip_weights")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("class_map")
    @classmethod
    def _check_class_map(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        check_roles(value or {})
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (HS256 needs a long random key)")
        return value

    @field_validator("webhook_allow_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is no network (CIDR, e.g. 10.1.0.0/16)") from None
        return value

    @field_validator("encryption_key")
    @classmethod
    def _check_encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            key = base64.urlsafe_b64decode(value.get_secret_value().encode())
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError("must be a Fernet key: 32 bytes, url-safe base64 (44 characters)")
        return value

    @field_validator("rate_limit", "rate_limit_ip")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        if not _RATE.match(value.strip()):
            raise ValueError("must look like `100/minute` (second, minute, hour or day)")
        return value.strip()

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        networks = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                networks.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR network") from None
        return ",".join(networks)

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _check_otel_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        return value.rstrip("/")

    @field_validator("otel_file")
    @classmethod
    def _check_otel_file(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def uses_local_object_store(self) -> bool:
        return self.object_store != "s3"

    def safe_dump(self) -> dict[str, object]:
        """Every setting by variable name, secrets masked, URL passwords removed: safe to log."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in _URL_SECRETS and value is not None:
                value = redact_url(value.get_secret_value())
            elif isinstance(value, SecretStr):
                value = "**********"
            shown[f"{ENV_PREFIX}{name.upper()}"] = None if value is None else str(value)
        return shown


_URL_SECRETS = frozenset({"mongodb_uri", "redis_url"})


def settings_env(settings: Settings) -> dict[str, str]:
    """Every set field as the MUGPOS_* variable that reproduces it (secrets revealed): how a
    parent process configures the workers and API it starts."""
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


def redact_url(url: str) -> str:
    """The URL with any password replaced, so a connection string can be shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; validation errors become one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"  {ENV_PREFIX}{field.upper()}: {message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
