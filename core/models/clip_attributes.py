"""Zero-shot attributes of mug crops with open_clip: full/empty, material, handle side, ...

Each prompt set is a small classifier: its text embeddings are computed once, then every crop's
image embedding is compared with them (softmax over the set's labels). Disabled in production unless
CLIP weights are configured — none can be fetched on these machines; tests run the mechanics on
randomly initialised weights.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.models.types import Detection

DEFAULT_PROMPT_SETS: dict[str, dict[str, str]] = {
    "fill": {
        "full": "a top-down photo of a mug full of coffee",
        "empty": "a top-down photo of an empty mug",
    },
    "material": {
        "ceramic": "a top-down photo of a ceramic mug",
        "glass": "a top-down photo of a glass cup",
        "paper": "a top-down photo of a paper cup",
    },
    "handle": {
        "left": "a top-down photo of a mug with its handle on the left",
        "right": "a top-down photo of a mug with its handle on the right",
    },
}


def crop(image: np.ndarray, detection: Detection, pad: float = 0.15) -> np.ndarray:
    """The detection's box grown by `pad` of its size (room for the handle), clipped to the image."""
    x0, y0, x1, y1 = detection.box
    grow_x, grow_y = (x1 - x0) * pad, (y1 - y0) * pad
    height, width = image.shape[:2]
    left, top = max(0, int(x0 - grow_x)), max(0, int(y0 - grow_y))
    right, bottom = min(width, int(np.ceil(x1 + grow_x))), min(height, int(np.ceil(y1 + grow_y)))
    return image[top : max(bottom, top + 1), left : max(right, left + 1)]


class ClipAttributes:
    def __init__(
        self,
        model_name: str = "ViT-B-32",
        weights: Path | None = None,
        *,
        device: str = "cpu",
        prompt_sets: Mapping[str, Mapping[str, str]] | None = None,
        allow_random_weights: bool = False,
    ) -> None:
        if weights is None and not allow_random_weights:
            raise ValueError("CLIP attributes need weights (MUGPOS_CLIP_WEIGHTS); none configured")
        import open_clip

        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(weights) if weights else None, device=device
        )
        self._model = model.eval()
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.device = device
        self.prompt_sets = {
            name: dict(labels) for name, labels in (prompt_sets or DEFAULT_PROMPT_SETS).items()
        }
        self._text: dict[str, torch.Tensor] = {}
        self._text_lock = threading.Lock()
        self.text_encodings = 0  # how many prompt sets were encoded (once each)

    def _text_embeddings(self, prompt_set: str) -> torch.Tensor:
        with self._text_lock:
            if prompt_set not in self._text:
                prompts = list(self.prompt_sets[prompt_set].values())
                with torch.inference_mode():
                    tokens = self._tokenizer(prompts).to(self.device)
                    embedded = self._model.encode_text(tokens)
                self._text[prompt_set] = embedded / embedded.norm(dim=-1, keepdim=True)
                self.text_encodings += 1
            return self._text[prompt_set]

    def score(self, crops: list[np.ndarray]) -> list[dict[str, dict[str, float]]]:
        """For each RGB crop, each prompt set's label probabilities (one batched image pass)."""
        if not crops:
            return []
        batch = torch.stack([self._preprocess(Image.fromarray(c)) for c in crops]).to(self.device)
        with torch.inference_mode():
            images = self._model.encode_image(batch)
            images = images / images.norm(dim=-1, keepdim=True)
            scale = self._model.logit_scale.exp()
            results: list[dict[str, dict[str, float]]] = [{} for _ in crops]
            for name, labels in self.prompt_sets.items():
                probs = (scale * images @ self._text_embeddings(name).T).softmax(dim=-1).cpu()
                for row, result in zip(probs.tolist(), results, strict=True):
                    result[name] = {
                        label: round(p, 5) for label, p in zip(labels, row, strict=True)
                    }
        return results
