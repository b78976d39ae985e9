"""Prometheus metrics of model loading and inference (exported by every worker's /metrics)."""

from prometheus_client import Gauge, Histogram

MODEL_LOAD_SECONDS = Histogram(
    "mugpos_model_load_seconds",
    "Time to load and warm up a model version",
    ["model", "backend"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
MODEL_MEMORY_BYTES = Gauge(
    "mugpos_model_memory_bytes", "Memory held by a loaded model version", ["model", "backend"]
)
INFERENCE_SECONDS = Histogram(
    "mugpos_inference_batch_seconds",
    "Model time per batch",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "mugpos_inference_batch_size",
    "Images per inference batch",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
