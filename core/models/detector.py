"""One detector interface over any backend: images in, detections in original pixels out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms

from core.models.backends import Backend
from core.models.class_map import ClassMap
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
    ) -> None:
        self.backend = backend
        self.class_names = class_names
        self.input_size = input_size
        self.class_map = class_map or ClassMap()
        self.config = config or DetectorConfig()
        self._roles = [self.class_map.role(name) for name in class_names]

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """RGB uint8 images of any sizes -> one fixed-shape batch and each image's letterbox."""
        boxed = [letterbox(image, self.input_size) for image in images]
        return to_batch([b[0] for b in boxed]), [b[1] for b in boxed]

    def detect(
        self, images: list[np.ndarray], confidence: float | None = None
    ) -> list[list[Detection]]:
        if not images:
            return []
        batch, boxes = self.preprocess(images)
        return self.postprocess(self.backend.infer(batch), boxes, confidence)

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
