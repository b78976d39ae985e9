"""Process and GPU readings for worker heartbeats (psutil; NVML through nvidia-ml-py)."""

from __future__ import annotations

import functools

import psutil

from core.worker_metrics import GpuReading
from schemas.control import GpuStats

_PROCESS = psutil.Process()
_PROCESS.cpu_percent(None)  # the first reading is meaningless; prime it


def process_stats() -> tuple[float, float]:
    """(CPU percent since the last call, resident memory in MB)."""
    return _PROCESS.cpu_percent(None), _PROCESS.memory_info().rss / 2**20


@functools.cache
def _nvml_handle(index: int):
    """NVML is initialised once per process, on the first heartbeat that needs it."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def gpu_stats(device: str | None) -> GpuStats:
    """The GPU this worker uses; an absent GPU or driver is reported as such, not raised."""
    if not device or not device.startswith("cuda"):
        return GpuStats(present=False, detail=f"worker runs on {device or 'no device yet'}")
    try:
        import pynvml

        handle = _nvml_handle(int(device.partition(":")[2] or 0))
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return GpuStats(
            present=True,
            name=str(pynvml.nvmlDeviceGetName(handle)),
            utilization_percent=float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            memory_used_mb=memory.used / 2**20,
            memory_total_mb=memory.total / 2**20,
            temperature_c=float(
                pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
            ),
        )
    except Exception as exc:  # no driver, no device: report, never fail a heartbeat
        return GpuStats(present=False, detail=f"NVML unavailable: {exc}")


def gpu_readings(device: str | None) -> list[GpuReading]:
    """The worker's GPU for its /metrics (core.worker_metrics): nothing on a CPU, or when NVML
    or the device is missing."""
    stats = gpu_stats(device)
    if not stats.present or device is None:
        return []
    mib = 2**20
    return [
        GpuReading(
            device=device,
            name=stats.name or "",
            utilization_percent=stats.utilization_percent or 0.0,
            memory_used_bytes=(stats.memory_used_mb or 0.0) * mib,
            memory_total_bytes=(stats.memory_total_mb or 0.0) * mib,
            temperature_c=stats.temperature_c or 0.0,
        )
    ]
