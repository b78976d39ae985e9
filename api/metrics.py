"""Prometheus metrics of the API process. Pipeline stage timings are observed from the results
the API follows (each result carries its per-stage milliseconds), so one scrape shows both."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ApiMetrics:
    def __init__(self) -> None:
        self._lookups = {True: 0, False: 0}
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by route template and status.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "endpoint"],
            registry=self.registry,
        )
        self.analysis_requests = Counter(
            "analysis_requests_total",
            "Images accepted (enqueued) or refused at upload.",
            ["outcome"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "pipeline_stage_duration_seconds",
            "Per-stage time of completed results, as reported by the workers.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.results = Counter(
            "pipeline_results_total",
            "Results seen on the results topic.",
            ["status"],
            registry=self.registry,
        )
        self.worker_cost = Gauge(
            "worker_gpu_cost_usd",
            "GPU-seconds x MUGPOS_GPU_PRICE_PER_HOUR.",
            ["worker"],
            registry=self.registry,
        )
        self.worker_gpu_seconds = Gauge(
            "worker_gpu_seconds",
            "GPU-seconds a worker has held its GPU.",
            ["worker"],
            registry=self.registry,
        )
        self.worker_dependency_down = Gauge(
            "worker_dependency_down_seconds",
            "How long a worker has found a dependency unavailable (its state is `degraded`).",
            ["worker", "dependency"],
            registry=self.registry,
        )
        self.cache = Counter(
            "result_cache_lookups_total",
            "Result lookups by cache outcome (hit, miss, error).",
            ["outcome"],
            registry=self.registry,
        )

    def observe_result(self, result: dict) -> None:
        self.results.labels(result.get("status", "unknown")).inc()
        for stage, ms in (result.get("timings_ms") or {}).items():
            if stage != "batch_size":
                self.stage_seconds.labels(stage).observe(ms / 1000)

    def observe_workers(self, view: dict) -> None:
        """Per-worker GPU cost and dependency outages from the registry, refreshed at each scrape."""
        self.worker_cost.clear()
        self.worker_gpu_seconds.clear()
        self.worker_dependency_down.clear()
        for worker in view["workers"]:
            self.worker_cost.labels(worker["worker_id"]).set(worker["cost_usd"])
            self.worker_gpu_seconds.labels(worker["worker_id"]).set(worker["gpu_seconds"])
            for dependency, seconds in worker.get("unavailable", {}).items():
                self.worker_dependency_down.labels(worker["worker_id"], dependency).set(seconds)

    def record_cache(self, outcome: str) -> None:
        """A result lookup's Redis outcome: hit, miss, or error (read from MongoDB instead)."""
        self.cache.labels(outcome).inc()
        self._lookups[outcome == "hit"] += 1

    def cache_hit_rate(self) -> float | None:
        total = self._lookups[True] + self._lookups[False]
        return None if total == 0 else self._lookups[True] / total
