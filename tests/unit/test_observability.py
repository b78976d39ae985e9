"""Metrics names and the dashboard and alerting rules in deploy/observability.

Every metric a process exports is prefixed `mugpos_` and counters end in `_total`; every PromQL
expression of the Grafana dashboard and of the Prometheus rules names only metrics the code
exports (collected from the registries of the worker and of the API), and the rules file has the
structure Prometheus loads, with every expression parsed by Prometheus' grammar (promql-parser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from api.metrics import ApiMetrics
from core import worker_metrics
from infra.system_stats import gpu_readings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _families(registry: CollectorRegistry) -> dict[str, str]:
    """name -> type of the mugpos families a registry holds (its collectors' described ones too)."""
    found = {m.name: m.type for m in registry.collect() if m.name.startswith("mugpos_")}
    for collector in list(registry._collector_to_names):
        describe = getattr(collector, "describe", None)
        for m in describe() if describe else ():
            if m.name.startswith("mugpos_"):
                found.setdefault(m.name, m.type)
    return found


def worker_families() -> dict[str, str]:
    worker_metrics.install(worker_metrics.WorkerCollector())  # as agents.pipeline does
    return _families(REGISTRY)


def api_families() -> dict[str, str]:
    return _families(ApiMetrics().registry)


def exported() -> set[str]:
    names = set()
    for families in (worker_families(), api_families()):
        for name, kind in families.items():
            names |= {name + suffix for suffix in _SUFFIXES[kind]}
    return names


def test_every_metric_is_prefixed_and_counters_end_in_total() -> None:
    for families in (worker_families(), api_families()):
        assert families
        for name, kind in families.items():
            assert name.startswith("mugpos_"), name
            assert kind in _SUFFIXES, (name, kind)
    names = exported()
    assert {
        "mugpos_stage_duration_seconds_bucket",
        "mugpos_batch_wait_seconds_bucket",
        "mugpos_inference_batch_size_bucket",
        "mugpos_queue_depth",
        "mugpos_images_in_flight",
        "mugpos_consumer_lag",
        "mugpos_results_total",
        "mugpos_dead_letters_total",
        "mugpos_retries_total",
        "mugpos_dependency_degraded",
        "mugpos_model_load_seconds_bucket",
        "mugpos_gpu_utilization_ratio",
        "mugpos_gpu_memory_used_bytes",
        "mugpos_gpu_temperature_celsius",
        "mugpos_worker_gpu_seconds_total",  # a counter now, not a gauge
        "mugpos_http_requests_total",
        "mugpos_workers",
    } <= names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, from Prometheus' grammar (promql-parser, which
    also type-checks: a range vector where an instant one belongs is an error). Grafana's
    `$__rate_interval` stands for a duration."""
    tree = promql_parser.parse(expr.replace("$__rate_interval", "5m"))
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(tree, visit)
    return names


def test_metric_names_are_found_in_promql() -> None:
    expr = 'sum by (le, stage) (rate(mugpos_x_bucket{stage=~"a|b"}[5m])) / on (stage) up > 0.5'
    assert metric_names(expr) == {"mugpos_x_bucket", "up"}
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        metric_names("sum(rate(mugpos_x_total[5m]) by")


def rule_expressions() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_expression_names_only_exported_metrics(source: str) -> None:
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    assert expressions
    names = exported()
    for expr in expressions:
        used = metric_names(expr)
        assert used, expr
        assert used <= names, (expr, used - names)


_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_the_rules_file_has_the_structure_prometheus_loads() -> None:
    """A strict check of what `promtool check rules` checks of the structure."""
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    alerts: set[str] = set()
    groups = [g["name"] for g in document["groups"]]
    assert len(groups) == len(set(groups)), "group names must be unique"
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.keys()
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule["alert"]
            assert rule["alert"] not in alerts, f"alert {rule['alert']} defined twice"
            alerts.add(rule["alert"])
            assert isinstance(rule["expr"], str)
            assert rule["expr"].strip()
            assert _DURATION.match(rule.get("for", "0s")), rule.get("for")
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
            promql_parser.parse(rule["expr"])  # valid PromQL
    # What the issue asks alerts for.
    assert {
        "MugposConsumerLagGrowing",
        "MugposDeadLetterRate",
        "MugposWorkerLost",
        "MugposStageLatencyP95High",
        "MugposDependencyDegraded",
    } <= alerts


def test_the_gpu_collector_exports_nothing_without_a_gpu_and_does_not_fail() -> None:
    """On a CPU (nothing faked): no GPU family, no error, the other readings still there."""
    collector = worker_metrics.WorkerCollector(
        state=lambda: "running",
        gpus=lambda: [*gpu_readings(None), *gpu_readings("cpu"), *gpu_readings("cuda:0")],
        unavailable=lambda: {"mongodb": 3.5},
    )
    families = {m.name: m for m in collector.collect()}
    assert not any(name.startswith("mugpos_gpu_") for name in families)
    assert families["mugpos_dependency_degraded"].samples[0].labels == {"dependency": "mongodb"}
    running = [s for s in families["mugpos_worker_state"].samples if s.value == 1]
    assert [s.labels["state"] for s in running] == ["running"]


def test_a_reading_that_fails_leaves_the_scrape_intact() -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("no consumer yet")

    collector = worker_metrics.WorkerCollector(
        in_flight=broken,
        lag=lambda: [worker_metrics.LagReading("t", 0, "g", 4)],
        gpus=lambda: [worker_metrics.GpuReading("cuda:0", "H100", 50.0, 2.0, 4.0, 60.0)],
    )
    families = {m.name: m for m in collector.collect()}
    assert "mugpos_images_in_flight" not in families
    assert families["mugpos_consumer_lag"].samples[0].value == 4
    assert families["mugpos_gpu_utilization_ratio"].samples[0].value == 0.5
