"""`mugpos models import`: classes read from the weights, class-map presets, refusals, and the
manifest a worker then serves — on COCO-style weights made from the shipped detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from control.cli import app
from core.models.class_map import ClassMap
from core.models.importer import (
    ImportRefused,
    choose_class_map,
    import_weights,
    read_weights,
    smoke_detect,
)
from core.models.manifest import read_manifest, verify_files
from tests.model_fixtures import SHIPPED, coco_style_weights, shipped_manifest


@pytest.fixture(scope="module")
def coco_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return coco_style_weights(tmp_path_factory.mktemp("weights") / "yolo-coco.pt")


def test_classes_come_from_the_weights(coco_weights: Path) -> None:
    info = read_weights(coco_weights)
    assert info.classes == ["cup", "frisbee", "dining table", "laptop", "keyboard"]
    assert info.architecture.startswith("yolov8")
    assert read_weights(SHIPPED / "model.pt").classes == shipped_manifest().classes


def test_coco_preset_maps_cup_table_and_hazards_and_sees_no_coasters(coco_weights: Path) -> None:
    used, mapping = choose_class_map(read_weights(coco_weights).classes, "auto")
    assert used == "coco"
    classes = ClassMap(mapping)
    assert [classes.role(c) for c in ("cup", "dining table", "laptop", "book", "frisbee")] == [
        "mug",
        "table",
        "hazard",
        "hazard",
        "other",
    ]
    assert "coaster" not in mapping  # type: ignore[operator]
    assert choose_class_map(["mug", "coaster", "table"], "auto")[0] == "mugpos"


def test_a_map_without_mugs_is_refused() -> None:
    with pytest.raises(ImportRefused, match="none of the model's classes is a mug"):
        choose_class_map(["person", "car"], "auto")
    with pytest.raises(ImportRefused, match="coco"):
        choose_class_map(["mug", "coaster"], "coco")


def test_import_writes_a_verified_manifest_and_the_model_detects(
    coco_weights: Path, tmp_path: Path
) -> None:
    target = tmp_path / "coco-yolo" / "1.0.0"
    manifest = import_weights(coco_weights, target, name="coco-yolo", version="1.0.0")
    assert read_manifest(target) == manifest
    verify_files(target, manifest)  # sha256 of the copied weights
    assert manifest.input_size % 32 == 0
    assert manifest.recipe == {"imported_from": "yolo-coco.pt", "class_map_preset": "coco"}
    report = smoke_detect(target, manifest)
    assert report.roles.get("mug", 0) >= 1  # the shipped detector's mugs, now called cups
    assert "coaster" not in report.roles
    with pytest.raises(ImportRefused, match="already holds"):
        import_weights(coco_weights, target, name="coco-yolo", version="1.0.0")


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(ImportRefused, match="not a YOLO checkpoint"):
        read_weights(bogus)


def test_cli_import_into_the_model_dir(
    coco_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUGPOS_MODEL_DIR", str(tmp_path / "models"))
    runner = CliRunner()
    args = ["models", "import", str(coco_weights), "--name", "coco-yolo", "--version", "2"]
    done = runner.invoke(app, [*args, "--input-size", "320"])
    assert done.exit_code == 0, done.output
    assert "cannot see coasters" in done.output
    assert "smoke detection on a generated scene" in done.output
    manifest = read_manifest(tmp_path / "models" / "coco-yolo" / "2")
    assert manifest.input_size == 320
    # the built-in map names coasters, but these weights have no coaster class: still unseen
    builtin = [*args[:-1], "3", "--class-map", "builtin", "--no-smoke"]
    done = runner.invoke(app, builtin)
    assert done.exit_code == 0, done.output
    assert "(roles: mug, table, hazard)" in done.output
    assert "cannot see coasters" in done.output
    refused = runner.invoke(app, [*args, "--class-map", "mugpos", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2
    assert "none of the model's classes is a mug" in refused.output
