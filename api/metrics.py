"""Every Prometheus metric of the API process, defined here and nowhere else (the workers' are in
core.worker_metrics).

Pipeline stage timings are observed from the results the API follows (each result carries its
per-stage milliseconds), so one scrape shows both. Readings of other processes — the worker
registry (GPU time and cost, outages, states) and the pipeline's consumer lag — are taken at
scrape time (`observe_workers`, `observe_lag`): the lag comes from Kafka, not from a worker, so it
is there, and alerts on it fire, when no worker runs at all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from infra.kafka_admin import PartitionLag

STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: States a worker can have in the registry (schemas.control.WorkerState, plus `lost`).
REGISTRY_STATES = ("starting", "running", "paused", "degraded", "draining", "stopping", "lost")
#: Longest a scrape waits for Kafka's committed and end offsets before exporting no lag.
LAG_TIMEOUT_S = 3.0


class _WorkersCollector(Collector):
    """Per-worker readings from the last registry view, as counters (GPU time and cost only grow
    for a worker id) and gauges (current outages, workers per state)."""

    def __init__(self) -> None:
        self.view: dict = {"workers": []}

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.view["workers"])

    @staticmethod
    def _families(workers: Iterable[dict] = ()) -> list[Metric]:
        gpu = CounterMetricFamily(
            "mugpos_worker_gpu_seconds",
            "GPU-seconds a worker has held its GPU (0 on CPU), from its heartbeats.",
            labels=["worker"],
        )
        cost = CounterMetricFamily(
            "mugpos_worker_gpu_cost_usd",
            "GPU-seconds x MUGPOS_GPU_PRICE_PER_HOUR / 3600, per worker.",
            labels=["worker"],
        )
        down = GaugeMetricFamily(
            "mugpos_worker_dependency_down_seconds",
            "How long a worker has found a dependency unavailable (its state is `degraded`).",
            labels=["worker", "dependency"],
        )
        states = GaugeMetricFamily(
            "mugpos_workers",
            "Workers the registry knows, by state (`lost`: two heartbeats missed).",
            labels=["state"],
        )
        counts = dict.fromkeys(REGISTRY_STATES, 0)
        for worker in workers:
            wid = worker["worker_id"]
            gpu.add_metric([wid], worker["gpu_seconds"])
            cost.add_metric([wid], worker["cost_usd"])
            for dependency, seconds in worker.get("unavailable", {}).items():
                down.add_metric([wid, dependency], seconds)
            counts[worker["state"]] = counts.get(worker["state"], 0) + 1
        for state, n in counts.items():
            states.add_metric([state], n)
        return [gpu, cost, down, states]


class ApiMetrics:
    def __init__(self) -> None:
        self._lookups = {True: 0, False: 0}
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "mugpos_http_requests_total",
            "HTTP requests by route template and status.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "mugpos_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "endpoint"],
            registry=self.registry,
        )
        self.analysis_requests = Counter(
            "mugpos_analysis_requests_total",
            "Images accepted (enqueued) or refused at upload.",
            ["outcome"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "mugpos_pipeline_stage_duration_seconds",
            "Per-stage time of completed results, as reported by the workers.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "mugpos_pipeline_latency_seconds",
            "Submission (or receipt) to completion of each result, as reported by the workers.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.results = Counter(
            "mugpos_pipeline_results_total",
            "Results seen on the results topic.",
            ["status"],
            registry=self.registry,
        )
        self.cache = Counter(
            "mugpos_result_cache_lookups_total",
            "Result lookups by cache outcome (hit, miss, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "mugpos_consumer_lag",
            "Records of a pipeline topic partition not yet committed by its consumer group "
            "(log end minus committed offset), read from Kafka at scrape time.",
            ["topic", "partition", "group"],
            registry=self.registry,
        )
        self.consumer_lag_up = Gauge(
            "mugpos_consumer_lag_up",
            f"1 when the last scrape read the consumer lag from Kafka within {LAG_TIMEOUT_S} s.",
            registry=self.registry,
        )
        self._workers = _WorkersCollector()
        self.registry.register(self._workers)

    def observe_result(self, result: dict) -> None:
        self.results.labels(result.get("status", "unknown")).inc()
        for stage, ms in (result.get("timings_ms") or {}).items():
            if stage != "batch_size":
                self.stage_seconds.labels(stage).observe(ms / 1000)
        if result.get("latency_ms") is not None:
            self.latency.observe(result["latency_ms"] / 1000)

    def observe_workers(self, view: dict) -> None:
        """Per-worker GPU time, cost, outages and states from the registry, at each scrape."""
        self._workers.view = view

    def observe_lag(self, lags: list[PartitionLag] | None, default_group: str) -> None:
        """The pipeline's lag per partition; None when Kafka did not answer in time (the series
        disappear rather than show a stale value, and `mugpos_consumer_lag_up` is 0)."""
        self.consumer_lag.clear()
        self.consumer_lag_up.set(0 if lags is None else 1)
        for lag in lags or []:
            group = lag.group or default_group
            self.consumer_lag.labels(lag.topic, str(lag.partition), group).set(lag.lag)

    def record_cache(self, outcome: str) -> None:
        """A result lookup's Redis outcome: hit, miss, or error (read from MongoDB instead)."""
        self.cache.labels(outcome).inc()
        self._lookups[outcome == "hit"] += 1

    def cache_hit_rate(self) -> float | None:
        total = self._lookups[True] + self._lookups[False]
        return None if total == 0 else self._lookups[True] / total
