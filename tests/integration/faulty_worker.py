"""`mugpos worker` with faults injected on marked inputs: failures no real input triggers on
demand (a model that breaks on one image, a stage that fails for no reason it can name).

Run as `python -m tests.integration.faulty_worker worker ...`; tests start it through
`WorkerProcess(..., faulty=True)`. Everything else is the real worker against real services.
"""

from __future__ import annotations

from agents import stages
from control.cli import run
from core.models.manager import ModelManager

# An input carrying these bytes (after a valid JPEG, which decoders ignore) fails preprocessing.
PREPROCESS_POISON = b"mugpos-test-poison"
# A model input whose centre pixel is this colour makes the model raise (a solid PNG keeps it).
MODEL_POISON_RGB = (255, 0, 255)


def _install() -> None:
    detect = ModelManager.detect_letterboxed

    def failing_detect(self, images, boxes, confidence=None, **kwargs):  # type: ignore[no-untyped-def]
        for image in images:
            h, w = image.shape[:2]
            if tuple(int(v) for v in image[h // 2, w // 2, :3]) == MODEL_POISON_RGB:
                raise RuntimeError("injected: the model cannot read this image")
        return detect(self, images, boxes, confidence, **kwargs)

    prepare = stages.prepare

    def failing_prepare(data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if PREPROCESS_POISON in data:
            raise ValueError("injected: preprocessing breaks on this input")
        return prepare(data, *args, **kwargs)

    ModelManager.detect_letterboxed = failing_detect  # type: ignore[method-assign]
    stages.prepare = failing_prepare  # type: ignore[assignment]


if __name__ == "__main__":
    _install()
    run()
