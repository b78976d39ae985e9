"""One detector interface over any backend: images in, detections in original pixels out.

Input is prepared on the host (OpenCV letterbox, a float32 batch) or, with `on_device`, by
core.models.device_prep on the backend's device; both give the same letterbox geometry, so boxes
map back the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torchvision.ops import batched_nms

from core.imaging import ImageLimits, ImageRejected, decode_image
from core.models.backends import Backend, TensorBackend
from core.models.class_map import ClassMap
from core.models.device_prep import DevicePrep
from core.models.letterbox import Letterbox, letterbox, to_batch
from core.models.types import Detection


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    confidence: float = 0.25
    iou: float = 0.5
    max_detections: int = 100


class Detector:
    def __init__(
        self,
        backend: Backend,
        class_names: list[str],
        input_size: int,
        class_map: ClassMap | None = None,
        config: DetectorConfig | None = None,
        *,
        on_device: bool = False,
    ) -> None:
        self.backend = backend
        self.class_names = class_names
        self.input_size = input_size
        self.class_map = class_map or ClassMap()
        self.config = config or DetectorConfig()
        self._roles = [self.class_map.role(name) for name in class_names]
        self.roles = self.class_map.roles_seen(class_names)
        self.prep: DevicePrep | None = None  # set: input is prepared on the backend's device
        if on_device:
            if not isinstance(backend, TensorBackend):
                raise ValueError(f"the {backend.name} backend cannot take input on its device")
            self.prep = DevicePrep(input_size, backend.device, backend.input_dtype)

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """RGB uint8 images of any sizes -> one fixed-shape batch and each image's letterbox."""
        boxed = [letterbox(image, self.input_size) for image in images]
        return to_batch([b[0] for b in boxed]), [b[1] for b in boxed]

    def detect(
        self, images: list[np.ndarray], confidence: float | None = None
    ) -> list[list[Detection]]:
        if not images:
            return []
        if self.prep is not None:
            tensor, boxes = self.prep.from_pixels(images)
            return self.postprocess(self._infer_on_device(tensor), boxes, confidence)
        batch, boxes = self.preprocess(images)
        return self.postprocess(self.backend.infer(batch), boxes, confidence)

    def detect_letterboxed(
        self, images: list[np.ndarray], boxes: list[Letterbox], confidence: float | None = None
    ) -> list[list[Detection]]:
        """Images letterboxed to the input size upstream; `boxes` map detections back."""
        if self.prep is not None:
            raw = self._infer_on_device(self.prep.from_letterboxed(images))
        else:
            raw = self.backend.infer(to_batch(images))
        return self.postprocess(raw, boxes, confidence)

    def detect_encoded(
        self, data: list[bytes], confidence: float | None = None, limits: ImageLimits | None = None
    ) -> list[list[Detection] | ImageRejected]:
        """Image files straight to detections, one entry per file: its detections, or why it
        was refused (the reason codes of core.imaging)."""
        if self.prep is not None:
            prepared = self.prep.from_encoded(data, limits)
            rows, boxes, rejected = prepared.rows, prepared.letterboxes, prepared.rejected
            raw = self._infer_on_device(prepared.tensor) if rows else None
        else:
            rows, pixels, boxes, rejected = self._prepare_on_host(data, limits)
            raw = self.backend.infer(to_batch(pixels)) if rows else None
        found = self.postprocess(raw, boxes, confidence) if raw is not None else []
        results: dict[int, list[Detection] | ImageRejected] = dict(zip(rows, found, strict=True))
        results.update(rejected)
        return [results[index] for index in range(len(data))]

    def _infer_on_device(self, batch: torch.Tensor) -> np.ndarray:
        return cast(TensorBackend, self.backend).infer_tensor(batch)  # checked in __init__

    def _prepare_on_host(
        self, data: list[bytes], limits: ImageLimits | None
    ) -> tuple[list[int], list[np.ndarray], list[Letterbox], dict[int, ImageRejected]]:
        """What the pipeline's preprocess stage does: decode at the size needed, letterbox."""
        rows, pixels, boxes, rejected = [], [], [], {}
        for index, item in enumerate(data):
            try:
                image = decode_image(item, limits, fit=self.input_size)
            except ImageRejected as exc:
                rejected[index] = exc
                continue
            boxed, box = letterbox(image.pixels, self.input_size, (image.width, image.height))
            rows.append(index)
            pixels.append(boxed)
            boxes.append(box)
        return rows, pixels, boxes, rejected

    def postprocess(
        self, raw: np.ndarray, letterboxes: list[Letterbox], confidence: float | None = None
    ) -> list[list[Detection]]:
        """Per image: confidence filter, class-aware NMS, boxes back to original pixels."""
        threshold = self.config.confidence if confidence is None else confidence
        results = []
        for prediction, box_info in zip(raw, letterboxes, strict=True):
            candidates = prediction.T  # (anchors, 4 + classes)
            # Multi-label: every (anchor, class) above the threshold is a candidate. A mug on its
            # coaster has nearly the coaster's box, so one anchor must be able to report both.
            anchors, classes = np.nonzero(candidates[:, 4:] >= threshold)
            if not len(anchors):
                results.append([])
                continue
            scores = candidates[anchors, 4 + classes]
            cxcywh = candidates[anchors, :4]
            xyxy = np.c_[cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2]
            kept = batched_nms(
                torch.from_numpy(xyxy).float(),
                torch.from_numpy(scores).float(),
                torch.from_numpy(classes),
                self.config.iou,
            )
            kept = kept[: self.config.max_detections].numpy()
            original = box_info.to_original(xyxy[kept])
            results.append(
                [
                    Detection(
                        class_name=self.class_names[int(cls)],
                        role=self._roles[int(cls)],
                        confidence=round(float(score), 5),
                        box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                    )
                    for box, score, cls in zip(original, scores[kept], classes[kept], strict=True)
                ]
            )
        return results
