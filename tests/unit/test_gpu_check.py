"""bench/gpu_check.py is run on the lent GPU in one call, so it must work before it gets there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def test_runs_on_cpu_and_writes_its_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu"],
        env={**os.environ, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["info"]["device"] == "cpu"
    assert {(r["size"], r["batch"]) for r in report["rows"]} == {(64, 1), (64, 2), (96, 1), (96, 2)}
    assert all(r["images_per_s"] > 0 for r in report["rows"])
    assert report["loop"]["images_per_s"] > 0
    path = report["device_image_path"]
    assert path["input_size"] == 640
    assert set(path["images_per_s"]) == {"model_alone", "prepare_on_device", "jpeg_to_boxes"}
    assert all(rate > 0 for rate in path["images_per_s"].values())
    on_device = report["box_agreement"]["device_path_fp32_vs_cpu_fp32"]
    assert on_device["compared"] > 0
    assert on_device["unmatched"] == 0
    assert on_device["max_box_delta_px"] <= 0.5
    assert report["tensorrt_engine"]["status"] == "no CUDA device, so no TensorRT engine"
    assert "inference loop" in result.stdout.splitlines()[-1]
