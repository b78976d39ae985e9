"""TensorRT engines: the cache key, which engine (if any) a worker takes and why, and the build
command's refusal where it cannot build. No engine is built or loaded here (no GPU, no TensorRT)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from control.cli import app
from core.models import engine
from core.models.engine import (
    BUILD_NEEDS,
    EngineSpec,
    build_blocker,
    build_engine,
    choose_engine,
    engine_key,
    engine_path,
    find_engine,
)

SPEC = EngineSpec("mugdet-synth", "1.1.0", "ab12" * 16, 640, 8)
H100, TRT = "NVIDIA H100 80GB HBM3", "11.4.0.106"


def test_the_key_names_every_part_an_engine_depends_on() -> None:
    key = engine_key(SPEC, H100, TRT)
    assert key == (
        "mugdet-synth-1.1.0-ab12ab12ab12ab12-640px-b8-fp16-nvidia_h100_80gb_hbm3-trt11.4.0.106"
    )
    variants = [
        engine_key(replace(SPEC, version="1.0.0"), H100, TRT),
        engine_key(replace(SPEC, weights_sha256="cd34" * 16), H100, TRT),
        engine_key(replace(SPEC, input_size=320), H100, TRT),
        engine_key(replace(SPEC, batch=64), H100, TRT),
        engine_key(replace(SPEC, half=False), H100, TRT),
        engine_key(SPEC, "NVIDIA H200", TRT),
        engine_key(SPEC, H100, "10.13.0"),
    ]
    assert len({key, *variants}) == 1 + len(variants)
    path = engine_path(Path("/cache/engines"), SPEC, H100, TRT)
    assert path == Path("/cache/engines/mugdet-synth/1.1.0") / f"{key}.engine"


def test_an_engine_is_taken_only_when_everything_matches(tmp_path: Path) -> None:
    built = engine_path(tmp_path, SPEC, H100, TRT)
    missing = choose_engine(tmp_path, SPEC, H100, TRT)
    assert missing.path is None
    assert "mugpos models build-engine mugdet-synth:1.1.0 --batch 8" in missing.reason
    built.parent.mkdir(parents=True)
    built.write_bytes(b"engine")
    assert choose_engine(tmp_path, SPEC, H100, TRT).path == built
    # The same file is no use to another GPU, TensorRT, batch or weights.
    assert choose_engine(tmp_path, SPEC, "NVIDIA H200", TRT).path is None
    assert choose_engine(tmp_path, SPEC, H100, "10.13.0").path is None
    assert choose_engine(tmp_path, replace(SPEC, batch=16), H100, TRT).path is None
    assert choose_engine(tmp_path, replace(SPEC, weights_sha256="00" * 32), H100, TRT).path is None
    no_trt = choose_engine(tmp_path, SPEC, H100, None)
    assert (no_trt.path, no_trt.reason) == (None, "the tensorrt package is not installed")
    assert "no CUDA device" in choose_engine(tmp_path, SPEC, None, TRT).reason


def test_a_worker_here_serves_with_torch_and_says_why(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="core.models.engine"):
        assert find_engine(tmp_path, SPEC, "cpu") is None
    assert "mugdet-synth:1.1.0 serves with torch: no CUDA device" in caplog.text


def test_building_needs_cuda_and_tensorrt() -> None:
    assert "no CUDA device here" in str(build_blocker("cpu", False, TRT))
    assert "MUGPOS_DEVICE is cpu" in str(build_blocker("cpu", True, TRT))
    assert "tensorrt is not installed" in str(build_blocker("cuda:0", True, None))
    assert build_blocker("cuda:0", True, TRT) is None


def test_no_engine_is_built_without_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=BUILD_NEEDS):
        build_engine(tmp_path / "model.pt", tmp_path, SPEC, "cpu")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("cuda", "why"), [(False, "no CUDA device"), (True, "tensorrt is not")])
def test_build_engine_refuses_clearly(monkeypatch, cuda: bool, why: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(engine, "tensorrt_version", lambda: None)
    monkeypatch.setenv("MUGPOS_DEVICE", "auto")
    result = CliRunner().invoke(app, ["models", "build-engine", "mugdet-synth:1.1.0"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "needs a CUDA device and the tensorrt package; run it on the GPU machine" in output
    assert why in output
