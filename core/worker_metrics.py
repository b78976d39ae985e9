"""Every Prometheus metric a pipeline worker exports, defined here and nowhere else.

The worker serves them at `/metrics` of its HTTP endpoint (MUGPOS_WORKER_HTTP_PORT, agents.probes)
from the process's default registry. Names carry the `mugpos_` prefix and their unit
(`_seconds`, `_bytes`, `_total` for counters). Most are observed where the work happens (the model
manager, the stages, the delivery ledger); readings that only make sense at scrape time (state,
inputs in flight, consumer lag, dependency outages, GPU) come from `WorkerCollector`, which the
worker registers once with callables over its own state.

The API process has its own metrics (api.metrics); README "Observability" lists both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Buckets of stage and batch-wait durations: a millisecond to ten seconds.
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# --- model (core.models.manager) -------------------------------------------------------------
MODEL_LOAD_SECONDS = Histogram(
    "mugpos_model_load_seconds",
    "Time to load and warm up a model version.",
    ["model", "backend"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
MODEL_MEMORY_BYTES = Gauge(
    "mugpos_model_memory_bytes", "Memory held by a loaded model version.", ["model", "backend"]
)
INFERENCE_SECONDS = Histogram(
    "mugpos_inference_batch_seconds",
    "Model time per batch (the forward pass and its post-processing).",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "mugpos_inference_batch_size",
    "Images per inference batch.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

# --- stages (agents.stages) ------------------------------------------------------------------
STAGE_SECONDS = Histogram(
    "mugpos_stage_duration_seconds",
    "Time one stage took: preprocess and analysis per image, inference per micro-batch "
    "(all its images wait for it), sink per batched store-and-publish.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
BATCH_WAIT_SECONDS = Histogram(
    "mugpos_batch_wait_seconds",
    "How long a micro-batch waited between the worker taking its inputs from Kafka and the "
    "model starting on it (decoding plus queueing behind the batch ahead).",
    buckets=STAGE_BUCKETS,
)
RESULTS = Counter(
    "mugpos_results_total",
    "Results stored and published by this worker, by status (ok, rejected, failed, expired).",
    ["status"],
)
DEAD_LETTERS = Counter(
    "mugpos_dead_letters_total",
    "Inputs set aside on the dead-letter topic, by stage and reason code.",
    ["stage", "reason"],
)

# --- delivery (streams.delivery) -------------------------------------------------------------
RETRIES = Counter(
    "mugpos_retries_total",
    "Inputs given back to Kafka to be redone: by stage and the dependency that was down "
    "(`none`: the input itself failed and is retried before it is dead-lettered).",
    ["stage", "dependency"],
)

#: The families WorkerCollector yields (name -> help), so tests and dashboards can know every
#: name this module exports even when there is nothing to report (no GPU, no assignment).
COLLECTED = {
    "mugpos_worker_state": "1 for the state the worker reports (starting, running, paused, "
    "degraded, draining, stopping), 0 for the others.",
    "mugpos_images_in_flight": "Inputs taken from Kafka and not yet acknowledged, by stage.",
    "mugpos_queue_depth": "Tasks waiting for a thread of the worker's decode or inference pool.",
    "mugpos_consumer_lag": "Records of an assigned partition not yet committed by this worker "
    "(log end minus committed offset).",
    "mugpos_dependency_down_seconds": "How long a dependency has been unavailable to this "
    "worker (absent while it is up).",
    "mugpos_dependency_degraded": "1 while this worker finds the dependency unavailable and "
    "rewinds its inputs.",
    "mugpos_gpu_utilization_ratio": "GPU busy time over the last sample period, 0-1 (NVML).",
    "mugpos_gpu_memory_used_bytes": "GPU memory in use (NVML).",
    "mugpos_gpu_memory_total_bytes": "GPU memory of the device (NVML).",
    "mugpos_gpu_temperature_celsius": "GPU core temperature (NVML).",
}
WORKER_STATES = ("starting", "running", "paused", "degraded", "draining", "stopping")


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU as NVML saw it at scrape time."""

    device: str
    name: str
    utilization_percent: float
    memory_used_bytes: float
    memory_total_bytes: float
    temperature_c: float


@dataclass(frozen=True, slots=True)
class LagReading:
    topic: str
    partition: int
    group: str
    lag: int


@dataclass(eq=False)  # hashable by identity: the registry keys on it
class WorkerCollector(Collector):
    """Readings taken at scrape time from the worker's own state. Each source is a callable; a
    source that raises is skipped (a scrape never fails on one reading)."""

    state: Callable[[], str] = lambda: "starting"
    in_flight: Callable[[], dict[str, int]] = dict
    queues: Callable[[], dict[str, int]] = dict
    lag: Callable[[], Iterable[LagReading]] = tuple
    unavailable: Callable[[], dict[str, float]] = dict
    gpus: Callable[[], Iterable[GpuReading]] = tuple

    def describe(self) -> Iterator[Metric]:
        """Every family, empty: the names are known without reading anything."""
        for name, text in COLLECTED.items():
            yield GaugeMetricFamily(name, text, labels=self._labels(name))

    @staticmethod
    def _labels(name: str) -> list[str]:
        return {
            "mugpos_worker_state": ["state"],
            "mugpos_images_in_flight": ["stage"],
            "mugpos_queue_depth": ["pool"],
            "mugpos_consumer_lag": ["topic", "partition", "group"],
            "mugpos_dependency_down_seconds": ["dependency"],
            "mugpos_dependency_degraded": ["dependency"],
        }.get(name, ["gpu", "name"])

    def collect(self) -> Iterator[Metric]:
        families = {
            n: GaugeMetricFamily(n, t, labels=self._labels(n)) for n, t in COLLECTED.items()
        }
        readers = (self._state, self._flight, self._queues, self._lag, self._down, self._gpu)
        for read in readers:
            with contextlib.suppress(Exception):  # an unreadable source leaves its families empty
                read(families)
        yield from (f for f in families.values() if f.samples)

    def _state(self, f: dict[str, GaugeMetricFamily]) -> None:
        current = self.state()
        for state in WORKER_STATES:
            f["mugpos_worker_state"].add_metric([state], 1.0 if state == current else 0.0)

    def _flight(self, f: dict[str, GaugeMetricFamily]) -> None:
        for stage, count in self.in_flight().items():
            f["mugpos_images_in_flight"].add_metric([stage], count)

    def _queues(self, f: dict[str, GaugeMetricFamily]) -> None:
        for pool, depth in self.queues().items():
            f["mugpos_queue_depth"].add_metric([pool], depth)

    def _lag(self, f: dict[str, GaugeMetricFamily]) -> None:
        for r in self.lag():
            f["mugpos_consumer_lag"].add_metric([r.topic, str(r.partition), r.group], r.lag)

    def _down(self, f: dict[str, GaugeMetricFamily]) -> None:
        for dependency, seconds in self.unavailable().items():
            f["mugpos_dependency_down_seconds"].add_metric([dependency], seconds)
            f["mugpos_dependency_degraded"].add_metric([dependency], 1.0)

    def _gpu(self, f: dict[str, GaugeMetricFamily]) -> None:
        for g in self.gpus():
            labels = [g.device, g.name]
            f["mugpos_gpu_utilization_ratio"].add_metric(labels, g.utilization_percent / 100)
            f["mugpos_gpu_memory_used_bytes"].add_metric(labels, g.memory_used_bytes)
            f["mugpos_gpu_memory_total_bytes"].add_metric(labels, g.memory_total_bytes)
            f["mugpos_gpu_temperature_celsius"].add_metric(labels, g.temperature_c)


_installed: list[WorkerCollector] = []


def install(collector: WorkerCollector) -> WorkerCollector:
    """Register the worker's collector with the default registry, replacing an earlier one (a
    process that builds its pipeline twice, as tests do)."""
    while _installed:
        REGISTRY.unregister(_installed.pop())
    REGISTRY.register(collector)
    _installed.append(collector)
    return collector
