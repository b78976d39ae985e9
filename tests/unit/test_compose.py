"""docker-compose.yml cannot run here (no Docker engine), so it is checked statically: parsed
and validated against the Compose Specification by the compose-spec package (the compose_spec
Rust library's strict parser: unknown keys, bad types and bad enum values are refused), after the
same ${VAR}, ${VAR:-default} and ${VAR:?message} interpolation `docker compose config` does; then
the invariants the stack relies on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from compose_spec import PyOptions

from core.config import ENV_PREFIX, Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
NEEDED = {
    "kafka",
    "mongodb",
    "redis",
    "minio",
    "setup",
    "api",
    "worker-cpu",
    "worker-gpu",
    "webhooks",
    "streams",
}
APPS = {"setup", "api", "worker-cpu", "worker-gpu", "worker-cpu-inference", "webhooks", "streams"}
BACKENDS = {"kafka", "mongodb", "redis", "minio"}
SECRETS = {
    "MUGPOS_JWT_SECRET",
    "MUGPOS_ENCRYPTION_KEY",
    "MONGO_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
}
# What a user puts in .env (deploy/compose.env.example).
DOTENV = {name: f"test-{name.lower()}-0123456789abcdef0123456789" for name in SECRETS}
_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of the forms the file uses (a missing :? variable is an error)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$$"  # left for the container's shell, as compose does
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op in (":?", "?") and not value:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and not value:
            return arg
        return value or ""

    return _VARIABLE.sub(substitute, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    text = interpolate(COMPOSE.read_text(), DOTENV)
    parsed = PyOptions(apply_merge=True).from_yaml(text)  # raises ValueError on a spec violation
    parsed.validate()
    return yaml.safe_load(text)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_every_service_the_app_needs_is_present(compose: dict) -> None:
    assert set(compose["services"]) >= NEEDED
    assert set(compose["services"]) == APPS | BACKENDS


def test_the_spec_parser_refuses_what_compose_would() -> None:
    """The validator is not a formality: a typo and a bad condition are refused."""
    good = "services:\n  a:\n    image: x:1\n"
    PyOptions(apply_merge=True).from_yaml(good)
    with pytest.raises(ValueError, match="bogus"):
        PyOptions(apply_merge=True).from_yaml(good + "    bogus: 1\n")
    with pytest.raises(ValueError, match="service_healthy"):
        PyOptions(apply_merge=True).from_yaml(
            good + "    depends_on: {b: {condition: healthy}}\n  b:\n    image: x:1\n"
        )


def test_every_mugpos_variable_is_a_settings_field(compose: dict) -> None:
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    used = {name: set(_environment(s)) for name, s in compose["services"].items()}
    used["x-mugpos-env"] = set(compose["x-mugpos-env"])
    unknown = {
        service: {n for n in names if n.startswith(ENV_PREFIX)} - fields
        for service, names in used.items()
    }
    assert {k: v for k, v in unknown.items() if v} == {}
    assert set().union(*used.values()) >= {
        "MUGPOS_KAFKA_BOOTSTRAP",
        "MUGPOS_MONGODB_URI",
        "MUGPOS_S3_ENDPOINT_URL",
        "MUGPOS_REDIS_URL",
        "MUGPOS_JWT_SECRET",
        "MUGPOS_ENCRYPTION_KEY",
    }
    assert not any(f"{ENV_PREFIX}IDLE_SHUTDOWN_S" in names for names in used.values())


def test_secrets_are_required_not_defaulted() -> None:
    text = COMPOSE.read_text()
    for name in SECRETS:
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", text), f"{name} must be ${{{name}:?message}}"
        assert not re.search(rf"\$\{{{name}:-", text), f"{name} must have no default"
        with pytest.raises(MissingVariable, match=name):
            interpolate(text, {k: v for k, v in DOTENV.items() if k != name})


def test_every_image_is_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} is not pinned"
    images = {name: s["image"] for name, s in compose["services"].items()}
    assert images["kafka"].startswith("apache/kafka:3.9.")
    assert not images["minio"].startswith("minio/"), "minio/minio left Docker Hub"


def test_healthchecks_and_start_order(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name == "setup":
            continue
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} has no health check"
    setup = services["setup"]
    assert setup["restart"] == "no"
    assert setup["command"] == ["mugpos", "setup"]
    assert {b: "service_healthy" for b in BACKENDS} == {
        b: c["condition"] for b, c in setup["depends_on"].items()
    }
    for name in APPS - {"setup"}:
        assert services[name]["depends_on"] == {
            "setup": {"condition": "service_completed_successfully"}
        }, name


def test_app_services_point_at_the_compose_backends(compose: dict) -> None:
    for name in APPS:
        env = _environment(compose["services"][name])
        assert env["MUGPOS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["MUGPOS_MONGODB_URI"].startswith("mongodb://mugpos:")
        assert "@mongodb:27017" in env["MUGPOS_MONGODB_URI"]
        assert env["MUGPOS_REDIS_URL"].startswith("redis://:")
        assert "@redis:6379" in env["MUGPOS_REDIS_URL"]
        assert env["MUGPOS_S3_ENDPOINT_URL"].startswith("http://minio:")
        assert len(env["MUGPOS_JWT_SECRET"]) >= 32


def test_kafka_has_a_listener_for_the_host(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    env = _environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)
    listeners = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert listeners["PLAINTEXT"] == "kafka:9092"
    host_port = listeners["HOST"].rsplit(":", 1)[1]
    assert any(str(p).endswith(f"{host_port}:{host_port}") for p in kafka["ports"])
    assert "HOST:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]


def test_roles_one_consumer_group_each(compose: dict) -> None:
    """CPU workers preprocess and analyse, the GPU worker only infers: two stage sets, so two
    consumer groups, and the GPU gets every inference partition."""
    services = compose["services"]
    stages = {
        name: services[name]["command"][services[name]["command"].index("--stage") + 1]
        for name in ("worker-cpu", "worker-gpu", "worker-cpu-inference")
    }
    assert stages == {
        "worker-cpu": "preprocess,analysis",
        "worker-gpu": "inference",
        "worker-cpu-inference": "inference",
    }
    assert services["worker-cpu-inference"]["profiles"] == ["cpu-only"]
    for name in stages:
        assert _environment(services[name])["MUGPOS_WORKER_HTTP_PORT"]


def test_gpu_worker_reserves_an_nvidia_device_and_cpu_workers_do_not(compose: dict) -> None:
    services = compose["services"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert _environment(services["worker-gpu"])["MUGPOS_DEVICE"].startswith("cuda")
    assert services["worker-gpu"]["build"]["target"] == "gpu"
    for name in ("worker-cpu", "worker-cpu-inference", "api", "setup", "webhooks", "streams"):
        assert "deploy" not in services[name]
        assert services[name]["build"]["target"] == "cpu"
    assert _environment(services["worker-cpu"])["MUGPOS_DEVICE"] == "cpu"


def test_the_env_example_names_every_required_secret() -> None:
    example = COMPOSE.parent / "deploy" / "compose.env.example"
    names = {line.split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line}
    assert names >= SECRETS


def test_the_webhook_dispatcher_runs_like_a_worker(compose: dict) -> None:
    """`mugpos webhooks run` with the workers' settings and the encryption key its endpoints'
    secrets need; its health check asks /healthz on the worker port, as the workers' does."""
    services = compose["services"]
    webhooks = services["webhooks"]
    assert webhooks["command"] == ["mugpos", "webhooks", "run"]
    assert webhooks["image"] == services["worker-cpu"]["image"]
    assert webhooks["healthcheck"] == services["worker-cpu"]["healthcheck"]
    assert webhooks["depends_on"] == services["worker-cpu"]["depends_on"]
    env = _environment(webhooks)
    worker = _environment(services["worker-cpu"])
    shared = set(compose["x-mugpos-env"])
    assert {k: env[k] for k in shared} == {k: worker[k] for k in shared}
    assert len(env["MUGPOS_ENCRYPTION_KEY"]) >= 32
    assert env["MUGPOS_WORKER_HTTP_PORT"] == worker["MUGPOS_WORKER_HTTP_PORT"]
    assert env["MUGPOS_WEBHOOK_ALLOW_NETWORKS"] == "[]"  # private receivers refused by default
    assert "ports" not in webhooks


def test_the_streams_service_runs_like_a_worker(compose: dict) -> None:
    """`mugpos streams run` with the workers' settings, health check and dependencies; one
    container (no replicas), nothing published."""
    services = compose["services"]
    streams = services["streams"]
    assert streams["command"] == ["mugpos", "streams", "run"]
    assert streams["image"] == services["worker-cpu"]["image"]
    assert streams["healthcheck"] == services["worker-cpu"]["healthcheck"]
    assert streams["depends_on"] == services["worker-cpu"]["depends_on"]
    env = _environment(streams)
    worker = _environment(services["worker-cpu"])
    shared = set(compose["x-mugpos-env"])
    assert {k: env[k] for k in shared} == {k: worker[k] for k in shared}
    assert env["MUGPOS_WORKER_HTTP_PORT"] == worker["MUGPOS_WORKER_HTTP_PORT"]
    assert "ports" not in streams
    assert "replicas" not in streams.get("deploy", {})


def test_allowed_webhook_networks_come_from_the_env_file() -> None:
    text = interpolate(
        COMPOSE.read_text(), {**DOTENV, "MUGPOS_WEBHOOK_ALLOW_NETWORKS": '["172.16.0.0/12"]'}
    )
    env = _environment(yaml.safe_load(text)["services"]["webhooks"])
    assert env["MUGPOS_WEBHOOK_ALLOW_NETWORKS"] == '["172.16.0.0/12"]'
    PyOptions(apply_merge=True).from_yaml(text).validate()
