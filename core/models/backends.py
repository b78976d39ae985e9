"""Inference backends: the raw YOLOv8 head output for a preprocessed batch, nothing more.

Every backend (these two, and core.models.engine's TensorRT one) returns an array of shape
(batch, 4 + classes, anchors) with boxes as centre-x, centre-y, width, height in model-input
pixels, so pre- and post-processing are shared and the backends are interchangeable.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from core.models.offline import prepare_offline

if TYPE_CHECKING:
    import torch


class Backend(Protocol):
    name: str
    device: str

    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def memory_bytes(self) -> int: ...


@runtime_checkable
class TensorBackend(Backend, Protocol):
    """A backend that also takes a batch already on its device (core.models.device_prep), so
    nothing but uint8 pixels or JPEG bytes crosses from the host."""

    @property
    def input_dtype(self) -> torch.dtype: ...

    def infer_tensor(self, batch: torch.Tensor) -> np.ndarray: ...


def resolve_device(setting: str) -> str:
    """`auto` picks the first CUDA device when one exists; otherwise the setting as given."""
    import torch

    if setting == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} requested but CUDA is not available here")
    return "cuda:0" if setting == "cuda" else setting


class TorchBackend:
    """ultralytics `.pt` weights run as a plain fused torch module (fp16 on CUDA)."""

    name = "torch"

    def __init__(self, weights: Path, device: str = "cpu", half: bool | None = None) -> None:
        prepare_offline()
        import torch
        from ultralytics import YOLO

        self.device = device
        self._torch = torch
        module = YOLO(str(weights)).model
        module = module.fuse(verbose=False) if hasattr(module, "fuse") else module
        self.half = device.startswith("cuda") if half is None else half
        module = module.to(device).eval()
        self._module = module.half() if self.half else module.float()
        self.class_names = [module.names[i] for i in sorted(module.names)]
        self._bytes = sum(
            t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()]
        )

    @property
    def input_dtype(self) -> torch.dtype:
        return self._torch.float16 if self.half else self._torch.float32

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_tensor(self._torch.from_numpy(batch).to(self.device))

    def infer_tensor(self, batch: torch.Tensor) -> np.ndarray:
        with self._torch.inference_mode():
            output = self._module(batch.to(self.input_dtype))
            output = output[0] if isinstance(output, tuple | list) else output
            return output.float().cpu().numpy()

    def memory_bytes(self) -> int:
        return self._bytes


def export_onnx(weights: Path, out: Path, imgsz: int) -> Path:
    """Export `.pt` weights to ONNX with a dynamic batch axis, offline (no simplifier download)."""
    return export_weights(weights, out, format="onnx", imgsz=imgsz, dynamic=True, device="cpu")


def export_weights(weights: Path, out: Path, **options: object) -> Path:
    """ultralytics' export of `.pt` weights with `options`, offline, moved to `out`."""
    prepare_offline()
    from ultralytics import YOLO

    out.parent.mkdir(parents=True, exist_ok=True)
    # ultralytics writes next to the weights: export a copy, so a read-only model folder works
    # and the bundled folder never gains stray files.
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        copy = Path(scratch) / weights.name
        shutil.copyfile(weights, copy)
        exported = Path(YOLO(str(copy)).export(simplify=False, verbose=False, **options))
        exported.replace(out)
    return out


class OnnxBackend:
    """ONNX Runtime: the faster CPU path at small batches; CUDA provider when available."""

    name = "onnx"

    def __init__(self, model: Path, device: str = "cpu", threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.split(":")[1]) if ":" in device else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        self.device = device
        self._session = ort.InferenceSession(str(model), options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._bytes = model.stat().st_size
        self._lock = threading.Lock()  # one run at a time keeps thread use predictable

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._session.run(None, {self._input: batch.astype(np.float32)})[0]

    def memory_bytes(self) -> int:
        return self._bytes
