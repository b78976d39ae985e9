"""The Helm chart deploy/helm/mugpos, rendered with `helm template` (offline) for the least a
deployment must supply and for the GPU + KEDA + ingress example, each object validated against the
Kubernetes schemas (kubernetes-validate, strict) and the chart's promises checked on the objects."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from core.config import ENV_PREFIX, Settings
from schemas.topics import TopicNames
from tests.deploy.tools import GPU_VALUES, REQUIRED, helm_template, render

pytestmark = pytest.mark.unit

KUBERNETES = "1.30.0"  # an older minor still served by the managed Kubernetes services
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
TOPICS = TopicNames("mugpos")
FIELDS = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}


@pytest.fixture(scope="module")
def default() -> list[dict]:
    return render(settings=REQUIRED)


@pytest.fixture(scope="module")
def gpu() -> list[dict]:
    return render(GPU_VALUES)


@pytest.fixture(params=["default", "gpu"])
def objects(request: pytest.FixtureRequest) -> list[dict]:
    return request.getfixturevalue(request.param)


def _of(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _workers(objects: list[dict]) -> dict[str, dict]:
    return {
        o["metadata"]["labels"]["mugpos.io/role"]: o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["labels"].get("mugpos.io/role")
    }


def _pod_specs(objects: list[dict]) -> list[dict]:
    specs = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")]
    return specs + [
        o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] == "CronJob"
    ]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_every_object_is_valid_for_kubernetes(objects: list[dict]) -> None:
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue  # no schema offline; their fields are checked below
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_without_the_required_secrets_the_chart_refuses_to_render() -> None:
    result = helm_template()
    assert result.returncode != 0
    assert "mongodb.uri is required" in result.stderr or "auth.jwtSecret" in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workers.inference.stages": "{inference,analysis}"}, "already runs in another role"),
        ({"workers.inference.enabled": "false"}, "are all needed"),
        ({"workers.inference.stages": "{all}"}, "cannot share the topics"),
    ],
)
def test_roles_run_every_stage_exactly_once(settings: dict[str, str], message: str) -> None:
    result = helm_template(settings={**REQUIRED, **settings})
    assert result.returncode != 0
    assert message in result.stderr


def test_idle_shutdown_is_refused_under_a_deployment() -> None:
    result = helm_template(settings={**REQUIRED, "config.MUGPOS_IDLE_SHUTDOWN_S": "60"})
    assert result.returncode != 0
    assert "MUGPOS_IDLE_SHUTDOWN_S" in result.stderr


def test_an_existing_secret_replaces_the_rendered_one() -> None:
    objects = render(settings={"existingSecret": "my-env", "keda.enabled": "true"})
    assert not _of(objects, "Secret")  # PLAINTEXT Kafka: no KEDA credentials either
    for spec in _pod_specs(objects):
        refs = [
            s["secretRef"]["name"] for s in spec["containers"][0]["envFrom"] if "secretRef" in s
        ]
        assert refs == ["my-env"]
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRDS:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_default_objects(default: list[dict]) -> None:
    kinds = sorted(o["kind"] for o in default)
    assert "Ingress" not in kinds
    assert "ScaledObject" not in kinds
    assert "ServiceMonitor" not in kinds
    assert set(_workers(default)) == {"cpu", "inference"}
    assert "mugpos-api" in _of(default, "Deployment")
    assert "mugpos-api" in _of(default, "Service")
    assert "mugpos-webhooks" in _of(default, "Deployment")
    assert "mugpos-webhooks" in _of(default, "Service")
    assert "mugpos-streams" not in _of(default, "Deployment")  # streams.enabled: false
    assert "mugpos-streams" not in _of(default, "Service")
    for spec in _pod_specs(default):
        for container in spec["containers"]:
            assert container["image"].endswith("-cpu")
            assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_every_mugpos_variable_is_a_setting_and_secrets_stay_in_secrets(
    objects: list[dict],
) -> None:
    secret_fields = {
        f"{ENV_PREFIX}{name.upper()}"
        for name, field in Settings.model_fields.items()
        if "Secret" in str(field.annotation)
    }
    for config in _of(objects, "ConfigMap").values():
        assert set(config["data"]) <= FIELDS, config["metadata"]["name"]
        assert not set(config["data"]) & secret_fields
        assert f"{ENV_PREFIX}IDLE_SHUTDOWN_S" not in config["data"]
    for secret in _of(objects, "Secret").values():
        keys = set(secret.get("stringData", {}))
        if secret["metadata"]["name"].endswith("-env"):
            assert keys <= secret_fields, secret["metadata"]["name"]
    for spec in _pod_specs(objects):
        for container in spec["containers"] + spec.get("initContainers", []):
            assert set(_env(container)) <= FIELDS
            assert f"{ENV_PREFIX}IDLE_SHUTDOWN_S" not in _env(container)


def test_pods_run_as_non_root_on_a_read_only_root_filesystem(objects: list[dict]) -> None:
    for spec in _pod_specs(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] in volumes
            assert mounts["/home/mugpos/.cache"] in volumes
            assert container["resources"]["limits"]["memory"]


def test_workers_probe_their_endpoint_and_run_their_stages(objects: list[dict]) -> None:
    expected = {"cpu": "preprocess,analysis", "inference": "inference"}
    for role, deployment in _workers(objects).items():
        (worker,) = deployment["spec"]["template"]["spec"]["containers"]
        assert worker["args"] == ["mugpos", "worker", "--stage", expected[role]]
        port = int(_env(worker)[f"{ENV_PREFIX}WORKER_HTTP_PORT"])
        assert worker["ports"][0]["containerPort"] == port
        assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert worker["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    api = _of(objects, "Deployment")["mugpos-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["args"][:4] == ["mugpos", "api", "--host", "0.0.0.0"]  # noqa: S104


def test_a_network_policy_admits_only_the_service_ports(objects: list[dict]) -> None:
    policies = _of(objects, "NetworkPolicy")
    assert set(policies) == {"mugpos", "mugpos-webhooks-egress"}
    policy = policies["mugpos"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {8000, 9100}
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for spec_owner in (o for o in objects if o["kind"] in ("Deployment", "Job")):
        labels = spec_owner["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


def test_every_deployment_has_a_disruption_budget(objects: list[dict]) -> None:
    budgets = [
        b["spec"]["selector"]["matchLabels"] for b in _of(objects, "PodDisruptionBudget").values()
    ]
    for deployment in _of(objects, "Deployment").values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(b.items() <= labels.items() for b in budgets), deployment["metadata"]["name"]


def test_setup_runs_as_a_hook_before_install_and_upgrade(objects: list[dict]) -> None:
    (job,) = _of(objects, "Job").values()
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"pre-install", "pre-upgrade"}
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["mugpos", "setup"]
    # What the hook reads exists when it runs: hook copies of the ConfigMap and Secret, created first.
    sources = job["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    names = {s.get("configMapRef", s.get("secretRef"))["name"] for s in sources}
    for name in names:
        copy = next(o for o in objects if o["metadata"]["name"] == name and o["kind"] != "Job")
        annotations = copy["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
        assert int(annotations["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"]["helm.sh/hook-weight"]
        )


def test_gpu_inference_workers(gpu: list[dict]) -> None:
    workers = _workers(gpu)
    spec = workers["inference"]["spec"]["template"]["spec"]
    (worker,) = spec["containers"]
    assert worker["image"] == "ghcr.io/example/mugpos:0.1.0-gpu"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _env(worker)[f"{ENV_PREFIX}DEVICE"] == "cuda:0"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    (init,) = spec["initContainers"]
    assert "mugpos models build-engine" in " ".join(init["command"])
    assert init["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    assert mounts["/home/mugpos/.cache"] == "cache"  # the worker reads the engine from there
    cpu = workers["cpu"]["spec"]["template"]["spec"]["containers"][0]
    assert cpu["image"].endswith("-cpu")
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_keda_scales_each_role_on_its_own_group_and_topics(gpu: list[dict]) -> None:
    consumed = {  # the groups the workers themselves join (agents.pipeline.consumer_group)
        "cpu": (
            TOPICS.role_group(("preprocess", "analysis")),
            {TOPICS.images, TOPICS.uploads, TOPICS.detected},
        ),
        "inference": (TOPICS.role_group(("inference",)), {TOPICS.prepared}),
    }
    scaled = _of(gpu, "ScaledObject")
    workers = _workers(gpu)
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {
        w["metadata"]["name"] for w in workers.values()
    }
    for role, worker in workers.items():
        assert "replicas" not in worker["spec"]  # KEDA owns the replica count
        obj = scaled[worker["metadata"]["name"]]
        group, topics = consumed[role]
        assert worker["metadata"]["annotations"]["mugpos.io/consumer-group"] == group
        triggers = obj["spec"]["triggers"]
        assert {t["metadata"]["topic"] for t in triggers} == topics
        for trigger in triggers:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            assert meta["consumerGroup"] == group
            assert meta["offsetResetPolicy"] == "earliest"
            assert meta["bootstrapServers"].endswith(":9092")
            assert trigger["authenticationRef"]["name"] == "mugpos-kafka"
        assert obj["spec"]["maxReplicaCount"] <= 12  # topics.partitions
    inference = scaled[workers["inference"]["metadata"]["name"]]
    assert inference["spec"]["minReplicaCount"] == 0
    assert scaled[workers["cpu"]["metadata"]["name"]]["spec"]["minReplicaCount"] >= 1


def test_kafka_security_reaches_the_workers_and_keda(gpu: list[dict]) -> None:
    config = _of(gpu, "ConfigMap")["mugpos-env"]["data"]
    assert config[f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config[f"{ENV_PREFIX}KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config[f"{ENV_PREFIX}KAFKA_SSL_CAFILE"] == "/etc/mugpos/kafka-tls/ca.crt"
    secret = _of(gpu, "Secret")["mugpos-env"]["stringData"]
    assert secret[f"{ENV_PREFIX}KAFKA_SASL_PASSWORD"]
    (auth,) = _of(gpu, "TriggerAuthentication").values()
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"tls", "sasl", "username", "password", "ca"}
    assert refs["password"] == {
        "parameter": "password",
        "name": "mugpos-env",
        "key": f"{ENV_PREFIX}KAFKA_SASL_PASSWORD",
    }
    assert refs["ca"]["name"] == "kafka-ca"
    keda_secret = _of(gpu, "Secret")["mugpos-keda-kafka"]["stringData"]
    assert keda_secret == {"tls": "enable", "sasl": "scram_sha512", "username": "mugpos"}


def test_ingress_and_service_monitor(gpu: list[dict]) -> None:
    (ingress,) = _of(gpu, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] in _of(gpu, "Service")
    assert ingress["spec"]["tls"][0]["secretName"] == "mugpos-tls"
    (monitor,) = _of(gpu, "ServiceMonitor").values()
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    service_ports = {p["name"] for s in _of(gpu, "Service").values() for p in s["spec"]["ports"]}
    assert ports <= service_ports
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(
        selector.items() <= s["metadata"]["labels"].items() for s in _of(gpu, "Service").values()
    )


def test_fused_workers_scale_on_the_pipeline_group() -> None:
    objects = render(
        settings={
            **REQUIRED,
            "keda.enabled": "true",
            "workers.cpu.stages": "{all}",
            "workers.inference.enabled": "false",
        }
    )
    (worker,) = _workers(objects).values()
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "all"
    (scaled,) = _of(objects, "ScaledObject").values()
    triggers = scaled["spec"]["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == {TOPICS.images, TOPICS.uploads}
    for trigger in triggers:
        assert trigger["metadata"]["consumerGroup"] == TOPICS.pipeline_group
        assert "authenticationRef" not in trigger


def _dispatcher(objects: list[dict]) -> dict:
    return _of(objects, "Deployment")["mugpos-webhooks"]


def test_the_webhook_dispatcher_runs_with_the_encryption_key_and_probes(
    objects: list[dict],
) -> None:
    deployment = _dispatcher(objects)
    assert "mugpos.io/role" not in deployment["metadata"]["labels"]  # not a pipeline worker
    assert deployment["metadata"]["annotations"]["mugpos.io/consumer-group"] == (
        f"{TOPICS.prefix}-webhooks"
    )
    assert deployment["spec"]["replicas"] == 1  # replicas, not KEDA, even with KEDA on
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["mugpos", "webhooks", "run"]
    assert container["image"].endswith("-cpu")
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    # The encryption key comes from the same Secret as the API's.
    api = _of(objects, "Deployment")["mugpos-api"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == api["envFrom"]
    (secret_name,) = (s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s)
    assert _of(objects, "Secret")[secret_name]["stringData"][f"{ENV_PREFIX}ENCRYPTION_KEY"]
    # The workers' endpoint: the same setting, port and probe paths.
    port = int(_env(container)[f"{ENV_PREFIX}WORKER_HTTP_PORT"])
    assert port == 9100
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": port, "protocol": "TCP"}
    ]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http-metrics"}
    # No model: a small cache of its own, never the shared model cache (a PVC there would pin it).
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["cache"]
    service = _of(objects, "Service")["mugpos-webhooks"]
    assert service["spec"]["ports"][0]["name"] == "http-metrics"
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_dispatcher_settings_load(objects: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the dispatcher's container gets (ConfigMap, Secret, env) is a valid Settings."""
    (container,) = _dispatcher(objects)["spec"]["template"]["spec"]["containers"]
    for source in container["envFrom"]:
        if "configMapRef" in source:
            data = _of(objects, "ConfigMap")[source["configMapRef"]["name"]]["data"]
        else:
            data = _of(objects, "Secret")[source["secretRef"]["name"]]["stringData"]
        for key, value in data.items():
            if not value.startswith("/etc/mugpos/kafka-tls/"):  # mounted in the pod, not here
                monkeypatch.setenv(key, value)
    for key, value in _env(container).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.encryption_key is not None
    assert settings.worker_http_port == 9100


def test_the_dispatcher_needs_the_encryption_key() -> None:
    settings = {k: v for k, v in REQUIRED.items() if k != "auth.encryptionKey"}
    result = helm_template(settings=settings)
    assert result.returncode != 0
    assert "auth.encryptionKey is required with webhooks.enabled" in result.stderr
    objects = render(settings={**settings, "webhooks.enabled": "false"})
    assert "mugpos-webhooks" not in _of(objects, "Deployment")
    assert set(_of(objects, "NetworkPolicy")) == {"mugpos"}
    assert f"{ENV_PREFIX}ENCRYPTION_KEY" not in _of(objects, "Secret")["mugpos-env"]["stringData"]


def test_the_streams_service_runs_as_one_replica_with_probes(gpu: list[dict]) -> None:
    """`mugpos streams run` reads every managed stream in each replica: one replica, replaced
    with Recreate (never two at once), with the workers' settings, endpoint and probes."""
    deployment = _of(gpu, "Deployment")["mugpos-streams"]
    assert "mugpos.io/role" not in deployment["metadata"]["labels"]  # not a pipeline worker
    assert "mugpos.io/consumer-group" not in deployment["metadata"]["annotations"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert _of(gpu, "PodDisruptionBudget")["mugpos-streams"]["spec"]["maxUnavailable"] == 1
    assert "mugpos-streams" not in _of(gpu, "ScaledObject")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["mugpos", "streams", "run"]
    assert container["image"].endswith("-cpu")
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    api = _of(gpu, "Deployment")["mugpos-api"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == api["envFrom"]
    port = int(_env(container)[f"{ENV_PREFIX}WORKER_HTTP_PORT"])
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": port, "protocol": "TCP"}
    ]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http-metrics"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["cache"]
    service = _of(gpu, "Service")["mugpos-streams"]
    assert service["spec"]["ports"][0]["name"] == "http-metrics"
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"streams.enabled": "true", "streams.config.LOG_LEVEL": "DEBUG"}, "only MUGPOS_*"),
        (
            {"streams.enabled": "true", "streams.config.MUGPOS_WORKER_HTTP_PORT": "1"},
            "set by the chart",
        ),
    ],
)
def test_the_streams_service_refuses_bad_values(settings: dict[str, str], message: str) -> None:
    result = helm_template(settings={**REQUIRED, **settings})
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"webhooks.replicas": "7"}, "above topics.partitions"),
        ({"webhooks.config.LOG_LEVEL": "DEBUG"}, "only MUGPOS_* settings"),
        ({"webhooks.config.MUGPOS_WORKER_HTTP_PORT": "1"}, "set by the chart"),
        ({"config.MUGPOS_WEBHOOK_ALLOW_NETWORKS": "[]"}, "webhooks.allowNetworks"),
    ],
)
def test_the_dispatcher_refuses_bad_values(settings: dict[str, str], message: str) -> None:
    result = helm_template(settings={**REQUIRED, **settings})
    assert result.returncode != 0
    assert message in result.stderr


def _egress(objects: list[dict]) -> dict:
    policy = _of(objects, "NetworkPolicy")["mugpos-webhooks-egress"]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    labels = _dispatcher(objects)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    others = [o for o in objects if o["kind"] in ("Deployment", "Job", "CronJob")]
    for other in others:
        if other["metadata"]["name"] != "mugpos-webhooks":
            template = other["spec"].get("jobTemplate", other)["spec"]["template"]
            assert not policy["spec"]["podSelector"]["matchLabels"].items() <= (
                template["metadata"]["labels"].items()
            ), other["metadata"]["name"]  # egress stays open for the rest
    return policy


def _rule_ports(rule: dict) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for p in rule["ports"]}


def test_the_dispatcher_reaches_only_dns_backends_and_public_receivers(
    objects: list[dict],
) -> None:
    dns, backends, receivers = _egress(objects)["spec"]["egress"]
    assert _rule_ports(dns) == {(53, "UDP"), (53, "TCP")}
    assert "to" not in dns
    assert _rule_ports(backends) == {(9092, "TCP"), (27017, "TCP")}  # kafka.bootstrap's port
    assert "to" not in backends
    assert _rule_ports(receivers) == {(443, "TCP"), (80, "TCP")}
    blocks = {p["ipBlock"]["cidr"]: set(p["ipBlock"].get("except", [])) for p in receivers["to"]}
    assert set(blocks) == {"0.0.0.0/0", "::/0"}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= blocks[
        "0.0.0.0/0"
    ]
    assert {"fc00::/7", "fe80::/10"} <= blocks["::/0"]
    config = _of(objects, "ConfigMap")["mugpos-env"]["data"]
    assert f"{ENV_PREFIX}WEBHOOK_ALLOW_NETWORKS" not in config


def test_allowed_networks_open_the_guard_and_the_policy() -> None:
    objects = render(
        settings={
            **REQUIRED,
            "kafka.bootstrap": "k-0:9093\\,k-1:9093\\,k-2",
            "webhooks.allowNetworks": "{10.1.0.0/16,192.168.7.7}",
            "webhooks.networkPolicy.receiverPorts": "{443,8443}",
            "webhooks.config.MUGPOS_WEBHOOK_ATTEMPTS": "8",
        }
    )
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRDS:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    _, backends, receivers = _egress(objects)["spec"]["egress"]
    assert _rule_ports(backends) == {(9093, "TCP"), (9092, "TCP"), (27017, "TCP")}
    assert _rule_ports(receivers) == {(443, "TCP"), (8443, "TCP")}
    cidrs = [p["ipBlock"]["cidr"] for p in receivers["to"]]
    assert cidrs[-2:] == ["10.1.0.0/16", "192.168.7.7/32"]
    for name in ("mugpos-env", "mugpos-setup-env"):
        config = _of(objects, "ConfigMap")[name]["data"]
        allowed = json.loads(config[f"{ENV_PREFIX}WEBHOOK_ALLOW_NETWORKS"])
        assert allowed == ["10.1.0.0/16", "192.168.7.7/32"]
    (container,) = _dispatcher(objects)["spec"]["template"]["spec"]["containers"]
    assert _env(container)[f"{ENV_PREFIX}WEBHOOK_ATTEMPTS"] == "8"


def test_egress_restriction_and_policies_can_be_turned_off() -> None:
    objects = render(settings={**REQUIRED, "webhooks.networkPolicy.restrictEgress": "false"})
    assert set(_of(objects, "NetworkPolicy")) == {"mugpos"}
    objects = render(settings={**REQUIRED, "networkPolicy.enabled": "false"})
    assert not _of(objects, "NetworkPolicy")
