"""bench/positioning_accuracy.py --record writes a look's figures into a model's manifest: each
shipped manifest carries them, and bench/gpu_session.sh brings a new model back with them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from core.models.manifest import bundled_dir, read_manifest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "positioning_accuracy.py"
RECORD = ("--style", "holdout", "--record")
FIGURES = {
    "map50",
    "mug_recall",
    "coaster_precision",
    "coaster_recall",
    "on_coaster_accuracy",
    "edge_error_median_cm",
    "scenes",
}


def test_record_writes_the_look_s_figures_and_keeps_the_rest(tmp_path: Path) -> None:
    model = tmp_path / "1.0.0"
    shutil.copytree(bundled_dir("mugdet-synth:1.0.0"), model)
    before = read_manifest(model)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--model-dir", str(model), "--scenes", "3", *RECORD],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    after = read_manifest(model)
    prefix = "holdout_style_"
    recorded = {k.removeprefix(prefix) for k in after.metrics if k.startswith(prefix)}
    assert recorded >= FIGURES
    assert after.metrics["holdout_style_scenes"] == 3.0
    assert 0.0 <= after.metrics["holdout_style_map50"] <= 1.0
    # Everything else stays: the weights' checksum, the recipe, the other figures.
    assert after.model_dump(exclude={"metrics"}) == before.model_dump(exclude={"metrics"})
    others = {k: v for k, v in before.metrics.items() if not k.startswith(prefix)}
    assert others
    assert all(after.metrics[k] == v for k, v in others.items())


def test_record_refuses_figures_that_are_not_the_manifest_s() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--perspective", "0.3", "--record"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "--record measures the manifest's figures" in result.stderr
