"""Load, cache, serve and hot-swap detector versions within a memory budget.

A caller takes the active detector at the start of a batch and keeps it for that batch, so a swap
to another version never changes a batch in flight: the new version is loaded and warmed up first,
then made active in one assignment; the old one leaves the cache only by LRU eviction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from core import worker_metrics as metrics
from core.models.backends import Backend, OnnxBackend, TorchBackend, export_onnx, resolve_device
from core.models.class_map import ClassMap
from core.models.detector import Detector, DetectorConfig
from core.models.engine import EngineBackend, EngineSpec, find_engine
from core.models.letterbox import Letterbox
from core.models.manifest import ModelFiles, sha256_file
from core.models.types import Detection

log = logging.getLogger(__name__)
BackendChoice = Literal["auto", "torch", "onnx"]
# Where model input is prepared: on the host (OpenCV, float32 batch), or on the model's device
# (core.models.device_prep); `auto` is the device for torch on CUDA, the host otherwise.
ImagePath = Literal["auto", "host", "device"]
Resolver = Callable[[str], Awaitable[ModelFiles]]


@dataclass(slots=True)
class LoadedModel:
    ref: str
    detector: Detector
    memory_bytes: int
    load_seconds: float


class ModelBudgetError(RuntimeError):
    """A model does not fit in the memory budget even with everything else evicted."""


class ModelMismatchError(ValueError):
    """A model version cannot replace the active one in a running pipeline."""


class ModelManager:
    def __init__(
        self,
        resolve: Resolver,
        *,
        device: str = "auto",
        backend: BackendChoice = "auto",
        cpu_budget_bytes: int = 2 << 30,
        export_dir: Path,
        class_map: ClassMap | None = None,
        confidence: float | None = None,
        image_path: ImagePath = "auto",
        engine_dir: Path | None = None,
        engine_batch: int = 8,
    ) -> None:
        """`engine_dir`: where `mugpos models build-engine` puts TensorRT engines; a CUDA torch
        backend uses the one matching this GPU, TensorRT, weights, input size and
        `engine_batch`. None: never look."""
        self._resolve = resolve
        self.device = resolve_device(device)
        self.backend_choice = backend
        if image_path == "device" and self.backend_name == "onnx":
            raise ValueError("input prepared on the device needs the torch backend, not onnx")
        self.image_path = image_path
        self.engine_dir = engine_dir
        self.engine_batch = engine_batch
        self.budget_bytes = self._budget(cpu_budget_bytes)
        self.export_dir = export_dir
        self.class_map = class_map  # None: each manifest's own, else the built-in map
        self.confidence = confidence  # None: each model's own operating threshold
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._active: LoadedModel | None = None
        self._lock = asyncio.Lock()

    def _budget(self, cpu_budget: int) -> int:
        if self.device.startswith("cuda"):
            import torch

            _, total = torch.cuda.mem_get_info(torch.device(self.device))
            return int(total * 0.8)  # leave room for activations of large batches
        return cpu_budget

    @property
    def backend_name(self) -> str:
        if self.backend_choice != "auto":
            return self.backend_choice
        return "torch" if self.device.startswith("cuda") else "onnx"

    @property
    def prepares_on_device(self) -> bool:
        if self.image_path != "auto":
            return self.image_path == "device"
        return self.backend_name == "torch" and self.device.startswith("cuda")

    @property
    def active(self) -> LoadedModel:
        if self._active is None:
            raise RuntimeError("no model is active; call activate() first")
        return self._active

    def loaded(self) -> list[str]:
        """Loaded versions, least recently used first."""
        return list(self._loaded)

    def used_bytes(self) -> int:
        return sum(m.memory_bytes for m in self._loaded.values())

    async def get(self, ref: str, input_size: int | None = None) -> LoadedModel:
        """A loaded model version, loading (and evicting older ones) when needed.

        With `input_size`, a version made for another input size is refused before it loads.
        """
        async with self._lock:
            files = await self._resolve(ref)
            manifest = files.manifest
            if input_size is not None and manifest.input_size != input_size:
                raise ModelMismatchError(
                    f"{manifest.ref} takes {manifest.input_size} px input but this pipeline "
                    f"prepares {input_size} px images; set MUGPOS_MODEL and restart the workers"
                )
            key = manifest.ref
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            model = await asyncio.to_thread(self._load, files)
            self._make_room(model.memory_bytes)
            self._loaded[key] = model
            return model

    async def activate(self, ref: str, input_size: int | None = None) -> LoadedModel:
        """Hot swap: load and warm `ref` fully, then make it the version new batches use.

        A running pipeline passes its `input_size`: images reach inference already letterboxed.
        """
        model = await self.get(ref, input_size)
        previous, self._active = self._active, model
        if previous is not model:
            log.info("active model %s -> %s", previous.ref if previous else None, model.ref)
        return model

    def detect(
        self, images: list[np.ndarray], confidence: float | None = None
    ) -> tuple[str, list[list[Detection]]]:
        """Run the active version on a batch (call from a worker thread); returns (ref, results)."""
        model = self.active  # taken once: a swap during this batch does not affect it
        started = time.perf_counter()
        results = model.detector.detect(images, confidence)
        metrics.INFERENCE_SECONDS.labels(model.ref).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(model.ref).observe(len(images))
        return model.ref, results

    def detect_letterboxed(
        self,
        images: list[np.ndarray],
        boxes: list[Letterbox],
        confidence: float | None = None,
        *,
        ref: str | None = None,
    ) -> tuple[str, list[list[Detection]]]:
        """Like `detect`, for images already letterboxed to the model's input size upstream;
        `boxes` map the detections back to each original image. `ref`: a loaded version other
        than the active one (`get` loads it); one evicted meanwhile falls back to the active."""
        model = self._loaded.get(ref, self.active) if ref else self.active
        started = time.perf_counter()
        results = model.detector.detect_letterboxed(images, boxes, confidence)
        metrics.INFERENCE_SECONDS.labels(model.ref).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(model.ref).observe(len(images))
        return model.ref, results

    def roles_of(self, ref: str) -> tuple[str, ...] | None:
        """The roles a loaded version can see (Detector.roles); None when it is not loaded."""
        loaded = self._loaded.get(ref)
        return loaded.detector.roles if loaded else None

    def _make_room(self, needed: int) -> None:
        if needed > self.budget_bytes:
            raise ModelBudgetError(
                f"model needs {needed / 2**20:.0f} MiB, the budget is {self.budget_bytes / 2**20:.0f} MiB"
            )
        while self.used_bytes() + needed > self.budget_bytes:
            victim = next(
                (r for r in self._loaded if self._active is None or r != self._active.ref), None
            )
            if victim is None:
                raise ModelBudgetError("the active model leaves no room for another version")
            evicted = self._loaded.pop(victim)
            metrics.MODEL_MEMORY_BYTES.labels(victim, self.backend_name).set(0)
            log.info("evicted model %s (%d bytes)", victim, evicted.memory_bytes)

    def _backend(self, files: ModelFiles) -> Backend:
        if self.backend_name == "torch":
            return self._engine(files) or TorchBackend(files.weights, self.device)
        onnx = files.path / "model.onnx"
        if "model.onnx" not in files.manifest.files:
            # Exported once per weights checksum and reused, so a changed .pt never reuses stale ONNX.
            digest = sha256_file(files.weights)[:16]
            onnx = self.export_dir / files.manifest.name / files.manifest.version / f"{digest}.onnx"
            if not onnx.exists():
                export_onnx(files.weights, onnx, files.manifest.input_size)
        return OnnxBackend(onnx, self.device)

    def _engine(self, files: ModelFiles) -> EngineBackend | None:
        """The prebuilt TensorRT engine for this version on this GPU, when there is one."""
        if self.engine_dir is None or not self.device.startswith("cuda"):
            return None
        spec = EngineSpec.of(files.manifest, sha256_file(files.weights), self.engine_batch)
        path = find_engine(self.engine_dir, spec, self.device)
        if path is None:
            return None
        try:
            return EngineBackend(path, self.device)
        except Exception:  # a damaged or foreign engine file must not stop the worker
            log.warning("%s does not load; serving with torch", path, exc_info=True)
            return None

    def _load(self, files: ModelFiles) -> LoadedModel:
        started = time.perf_counter()
        backend = self._backend(files)
        manifest = files.manifest
        detector = Detector(
            backend,
            manifest.classes,
            manifest.input_size,
            self.class_map or ClassMap(manifest.class_map),
            DetectorConfig(confidence=self.confidence or manifest.confidence),
            on_device=self.prepares_on_device,
        )
        size = manifest.input_size
        detector.detect([np.zeros((size, size, 3), dtype=np.uint8)])  # warm-up
        seconds = time.perf_counter() - started
        memory = backend.memory_bytes()
        metrics.MODEL_LOAD_SECONDS.labels(manifest.ref, backend.name).observe(seconds)
        metrics.MODEL_MEMORY_BYTES.labels(manifest.ref, backend.name).set(memory)
        log.info("loaded %s (%s on %s) in %.2f s", manifest.ref, backend.name, self.device, seconds)
        return LoadedModel(manifest.ref, detector, memory, seconds)
