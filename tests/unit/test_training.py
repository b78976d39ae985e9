"""The training command end to end on a tiny budget: data, training, hold-out, weights, manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from control.cli import app
from core.models.manifest import read_manifest, verify_files


def test_train_writes_verifiable_weights_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--synthetic",
            "--epochs",
            "1",
            "--imgsz",
            "64",
            "--scenes",
            "12",
            "--version",
            "0.0.1",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    verify_files(out, manifest)
    assert (manifest.ref, manifest.input_size) == ("mugdet-synth:0.0.1", 64)
    assert manifest.classes == ["mug", "coaster", "table", "laptop", "keyboard"]
    assert set(manifest.metrics) >= {"holdout_map50", "holdout_map50_95"}
    assert manifest.recipe["epochs"] == 1
    # Hold-out scenes are generated fresh with their own seeds, apart from training data.
    assert (tmp_path / "work" / "holdout" / "truth").is_dir()

    # A second stage continues from the first and records where it started.
    second = tmp_path / "model2"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--synthetic",
            "--epochs",
            "1",
            "--imgsz",
            "64",
            "--scenes",
            "12",
            "--version",
            "0.0.2",
            "--out",
            str(second),
            "--workdir",
            str(tmp_path / "work2"),
            "--init",
            str(out / "model.pt"),
            "--batch",
            "4",
            "--val-scenes",
            "10",
            "--minutes",
            "0.1",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    recipe = read_manifest(second).recipe
    assert (recipe["batch"], recipe["val_scenes"], recipe["trained_on"]) == (4, 10, "cpu")
    assert recipe["time_hours"] == pytest.approx(0.1 / 60)
    assert recipe["init_weights"] == str(out / "model.pt")
    assert recipe["init_sha256"] == manifest.files["model.pt"]
    assert recipe["init_recipe"] == manifest.recipe


def test_train_refuses_a_non_synthetic_run_and_bad_sizes(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--synthetic", "--imgsz", "100"]).exit_code == 2
    refused = runner.invoke(app, ["train"])
    assert refused.exit_code == 2
    assert "only --synthetic training" in refused.output
