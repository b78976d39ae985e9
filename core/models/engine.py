"""TensorRT engines for the detector: built ahead of time, found by key, used only on a match.

Why ahead of time: building an engine takes minutes, so a worker never builds one (least of all
on its first batch); `mugpos models build-engine` does, on the GPU machine, into the model cache.
Why a key: an engine only runs on the GPU model and TensorRT version it was built with, for the
weights, input size, batch and precision it was built from, so the file name holds all of them
and a worker takes an engine only when every part matches its own; otherwise it serves with torch
and logs why. The engine runs through ultralytics' TensorRT backend, which replays a static
engine from one captured CUDA graph.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.models.backends import export_weights
from core.models.manifest import ModelManifest
from core.models.offline import prepare_offline

log = logging.getLogger(__name__)

BUILD_NEEDS = "needs a CUDA device and the tensorrt package; run it on the GPU machine"


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """What an engine is built from, apart from the machine."""

    name: str
    version: str
    weights_sha256: str
    input_size: int
    batch: int
    half: bool = True  # what torch serves with on CUDA

    @classmethod
    def of(cls, manifest: ModelManifest, weights_sha256: str, batch: int) -> EngineSpec:
        return cls(manifest.name, manifest.version, weights_sha256, manifest.input_size, batch)


def engine_key(spec: EngineSpec, gpu: str, tensorrt: str) -> str:
    """A file-name-safe key holding every part an engine depends on."""
    parts = [
        spec.name,
        spec.version,
        spec.weights_sha256[:16],
        f"{spec.input_size}px",
        f"b{spec.batch}",
        "fp16" if spec.half else "fp32",
        _slug(gpu),
        f"trt{tensorrt}",
    ]
    return "-".join(parts)


def engine_path(engine_dir: Path, spec: EngineSpec, gpu: str, tensorrt: str) -> Path:
    return engine_dir / spec.name / spec.version / f"{engine_key(spec, gpu, tensorrt)}.engine"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "_", text.lower()).strip("_")


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, None when the package is absent."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    import tensorrt

    return str(tensorrt.__version__)


def gpu_name(device: str) -> str | None:
    """The GPU model behind `device` (e.g. "NVIDIA H100 80GB HBM3"), None on CPU."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.device(device))


@dataclass(frozen=True, slots=True)
class EngineChoice:
    path: Path | None  # the engine to serve with; None: serve with torch
    reason: str


def choose_engine(
    engine_dir: Path, spec: EngineSpec, gpu: str | None, tensorrt: str | None
) -> EngineChoice:
    """The engine matching this model and machine, or why there is none."""
    if gpu is None:
        return EngineChoice(None, "no CUDA device, so no TensorRT engine")
    if tensorrt is None:
        return EngineChoice(None, "the tensorrt package is not installed")
    path = engine_path(engine_dir, spec, gpu, tensorrt)
    if not path.is_file():
        return EngineChoice(
            None,
            f"no engine {path.name} in {path.parent} (built ahead with "
            f"`mugpos models build-engine {spec.name}:{spec.version} --batch {spec.batch}`)",
        )
    return EngineChoice(path, f"TensorRT engine {path.name}")


def find_engine(engine_dir: Path, spec: EngineSpec, device: str) -> Path | None:
    """choose_engine on this machine, logging which backend the model gets and why."""
    choice = choose_engine(engine_dir, spec, gpu_name(device), tensorrt_version())
    if choice.path is None:
        log.info("%s:%s serves with torch: %s", spec.name, spec.version, choice.reason)
    else:
        log.info("%s:%s serves with the %s", spec.name, spec.version, choice.reason)
    return choice.path


def build_blocker(device: str, cuda: bool, tensorrt: str | None) -> str | None:
    """Why an engine cannot be built here (device: the resolved MUGPOS_DEVICE), or None."""
    if not cuda:
        return f"building a TensorRT engine {BUILD_NEEDS} (no CUDA device here)"
    if not device.startswith("cuda"):
        return f"building a TensorRT engine {BUILD_NEEDS} (MUGPOS_DEVICE is {device})"
    if tensorrt is None:
        return f"building a TensorRT engine {BUILD_NEEDS} (tensorrt is not installed)"
    return None


def build_engine(weights: Path, engine_dir: Path, spec: EngineSpec, device: str) -> Path:
    """Build the engine for `spec` on `device` into its place in the cache; minutes of work."""
    gpu, tensorrt = gpu_name(device), tensorrt_version()
    if gpu is None or tensorrt is None:
        raise RuntimeError(f"building a TensorRT engine {BUILD_NEEDS}")
    out = engine_path(engine_dir, spec, gpu, tensorrt)
    return export_weights(
        weights,
        out,
        format="engine",
        imgsz=spec.input_size,
        batch=spec.batch,
        quantize=16 if spec.half else 32,
        dynamic=False,  # a static engine can be replayed from a CUDA graph
        device=device,
    )


class EngineBackend:
    """A TensorRT engine of the detector; batches above its size are split, shorter padded."""

    name = "tensorrt"

    def __init__(self, path: Path, device: str) -> None:
        prepare_offline()
        from ultralytics.nn.autobackend import AutoBackend

        self.device = device
        self._engine = AutoBackend(str(path), device=torch.device(device), verbose=False)
        self._bytes = path.stat().st_size

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.float16 if self._engine.fp16 else torch.float32

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_tensor(torch.from_numpy(batch).to(self.device))

    def infer_tensor(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            output = self._engine(batch.to(self.input_dtype))
            output = output[0] if isinstance(output, tuple | list) else output
            return output.float().cpu().numpy()

    def memory_bytes(self) -> int:
        return self._bytes
