"""What a detector finds in real photos that a package bundles (no download): scikit-image's
`coffee()` (a cup on a saucer, seen from above at an angle) and `astronaut()` (no mug at all).

    python bench/real_photo.py [--model-dir DIR]

No target: the shipped detectors know generated scenes only. A saucer is not a coaster, and a
photo with no mug should give no mug; this prints what the model and the positioning make of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage import data

from core.models.backends import TorchBackend
from core.models.detector import Detector, DetectorConfig
from core.models.manifest import DEFAULT_MODEL, bundled_dir, read_manifest
from core.positioning import analyze

SHIPPED = bundled_dir(DEFAULT_MODEL)  # the default detector
PHOTOS = {"coffee (a cup on a saucer)": data.coffee, "astronaut (no mug)": data.astronaut}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=SHIPPED)
    args = parser.parse_args()
    manifest = read_manifest(args.model_dir)
    detector = Detector(
        TorchBackend(args.model_dir / manifest.weights, "cpu", half=False),
        manifest.classes,
        manifest.input_size,
        config=DetectorConfig(confidence=manifest.confidence),
    )
    print(f"model {manifest.ref}, operating threshold {manifest.confidence}")
    for name, load in PHOTOS.items():
        pixels = np.ascontiguousarray(load()[:, :, :3])
        found = detector.detect([pixels])[0]
        print(f"\n{name}, {pixels.shape[1]}x{pixels.shape[0]} px: {len(found)} detection(s)")
        for d in found:
            box = ", ".join(f"{v:.0f}" for v in d.box)
            print(f"  {d.class_name:<9} ({d.role:<7}) {d.confidence:.2f}  [{box}]")
        facts = analyze(found, (pixels.shape[1], pixels.shape[0]))
        print(
            f"  positioning: {facts.mug_count} mug(s), {facts.coasters} coaster(s), "
            f"{facts.ignored_coasters} coaster box(es) dropped as the mug seen twice"
        )
        for mug in facts.mugs:
            advice = mug.recommendation.text if mug.recommendation else "none"
            print(f"  mug {mug.index}: on coaster {mug.on_coaster}, score {mug.score}; {advice}")


if __name__ == "__main__":
    main()
