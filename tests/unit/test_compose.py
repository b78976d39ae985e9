"""docker-compose.yml cannot run here (no Docker engine), so its wiring is checked statically."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.config import ENV_PREFIX, Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
NEEDED = {"kafka", "mongodb", "redis", "minio", "api", "worker-cpu", "worker-gpu"}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _mugpos_vars(compose: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    anchors = compose.get("x-mugpos-env", {})
    found["x-mugpos-env"] = {k for k in anchors if k.startswith(ENV_PREFIX)}
    for name, service in compose["services"].items():
        found[name] = {k for k in _environment(service) if k.startswith(ENV_PREFIX)}
    return found


def test_every_service_the_app_needs_is_present() -> None:
    assert set(_compose()["services"]) >= NEEDED


def test_every_mugpos_variable_is_a_settings_field() -> None:
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    used = _mugpos_vars(_compose())
    unknown = {service: names - fields for service, names in used.items() if names - fields}
    assert unknown == {}
    assert set().union(*used.values()) >= {
        "MUGPOS_KAFKA_BOOTSTRAP",
        "MUGPOS_MONGODB_URI",
        "MUGPOS_S3_ENDPOINT_URL",
        "MUGPOS_REDIS_URL",
    }


def test_app_services_point_at_the_compose_backends() -> None:
    services = _compose()["services"]
    for name in ("api", "worker-cpu", "worker-gpu"):
        env = _environment(services[name])
        assert env["MUGPOS_KAFKA_BOOTSTRAP"].startswith("kafka:")
        assert env["MUGPOS_MONGODB_URI"].startswith("mongodb://mongodb:")
        assert env["MUGPOS_REDIS_URL"].startswith("redis://redis:")
        assert env["MUGPOS_S3_ENDPOINT_URL"].startswith("http://minio:")
        assert {"kafka", "mongodb", "redis", "minio"} <= set(services[name]["depends_on"])


def test_gpu_worker_reserves_an_nvidia_device_and_cpu_worker_does_not() -> None:
    services = _compose()["services"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert _environment(services["worker-gpu"])["MUGPOS_DEVICE"].startswith("cuda")
    assert _environment(services["worker-cpu"])["MUGPOS_DEVICE"] == "cpu"
    assert "deploy" not in services["worker-cpu"]


def test_kafka_runs_in_kraft_mode_on_3_9() -> None:
    kafka = _compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9")
    env = _environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)
