"""Model input prepared on the device (torch ops, run here on the CPU) against the host path: the
same letterbox, pixels within one grey level, boxes within 0.5 px; bad files refused one by one."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.imaging import ImageRejected, decode_image
from core.models.agreement import box_agreement
from core.models.backends import TorchBackend
from core.models.detector import Detector, DetectorConfig
from core.models.device_prep import DevicePrep
from core.models.letterbox import letterbox, to_batch
from core.models.manager import ModelManager
from core.models.manifest import read_manifest
from core.models.types import Detection
from core.synth.render import scene_jpegs
from infra.model_store import BUNDLED_DIR, ModelStore

SMALL_MODEL = "mugdet-synth:1.0.0"  # 320 px: the cheap one on a CPU
SMALL_DIR = BUNDLED_DIR.joinpath(*SMALL_MODEL.split(":"))


@pytest.fixture(scope="module")
def scenes() -> list[bytes]:
    return scene_jpegs(30_000, 6, 640)


def _pixels(row: torch.Tensor) -> np.ndarray:
    """One row of a prepared batch back as HWC uint8, to compare with the host's letterbox."""
    return (row.float() * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _jpeg(image: np.ndarray, mode: str = "RGB", orientation: int = 1) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, format="JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def _broken_huffman_table(data: bytes) -> bytes:
    """A JPEG whose structure is whole (it passes core.imaging.integrity) but whose first
    Huffman table claims impossible code counts, so every decoder fails on it."""
    counts = data.index(b"\xff\xc4") + 5  # marker, length (2), table class/id, then 16 counts
    return data[:counts] + b"\x40" * 16 + data[counts + 16 :]


@pytest.mark.parametrize(
    ("size", "crop"),
    [(320, None), (640, None), (320, (480, 640)), (416, (640, 300)), (640, (300, 500))],
    ids=["shrink", "same", "wide", "tall", "enlarge"],
)
def test_letterbox_matches_the_host_letterbox(scenes, size, crop) -> None:
    images = [decode_image(data).pixels for data in scenes[:3]]
    if crop:
        images = [image[: crop[0], : crop[1]] for image in images]
    tensor, boxes = DevicePrep(size, "cpu").from_pixels(images)
    assert tensor.shape == (3, 3, size, size)
    assert tensor.dtype == torch.float32
    for image, row, box in zip(images, tensor, boxes, strict=True):
        expected, expected_box = letterbox(image, size)
        assert box == expected_box
        assert np.abs(_pixels(row).astype(int) - expected).max() <= 1


def test_jpegs_give_the_host_letterbox_of_the_whole_image(scenes) -> None:
    prepared = DevicePrep(320, "cpu").from_encoded(scenes)
    assert prepared.rows == list(range(len(scenes)))
    assert prepared.rejected == {}
    for data, row, box in zip(scenes, prepared.tensor, prepared.letterboxes, strict=True):
        expected, expected_box = letterbox(decode_image(data).pixels, 320)
        assert box == expected_box
        assert np.abs(_pixels(row).astype(int) - expected).max() <= 1


def test_letterboxed_images_make_the_host_batch_exactly_and_fp16_on_request(scenes) -> None:
    images = [letterbox(decode_image(data).pixels, 320)[0] for data in scenes]
    expected = torch.from_numpy(to_batch(images))
    assert torch.equal(DevicePrep(320, "cpu").from_letterboxed(images), expected)
    half = DevicePrep(320, "cpu", torch.float16).from_letterboxed(images)
    assert half.dtype == torch.float16
    assert (half.float() - expected).abs().max() <= 1e-3


def test_a_bad_file_is_refused_alone_and_the_rest_of_the_batch_comes_out(scenes, caplog) -> None:
    undecodable = _broken_huffman_table(scenes[1])
    truncated = scenes[2][: len(scenes[2]) // 2]
    prep = DevicePrep(320, "cpu")
    with caplog.at_level(logging.INFO, logger="core.models.device_prep"):
        prepared = prep.from_encoded([scenes[0], undecodable, truncated, scenes[3]])
    assert "decoding one by one" in caplog.text  # the batched decode failed on the bad file
    assert prepared.rows == [0, 3]
    assert {i: r.reason for i, r in prepared.rejected.items()} == {
        1: "decode_error",
        2: "truncated_image",
    }
    alone = prep.from_encoded([scenes[0], scenes[3]])
    assert torch.equal(prepared.tensor, alone.tensor)
    assert prepared.letterboxes == alone.letterboxes


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(scenes, orientation: int) -> None:
    upright = decode_image(scenes[0]).pixels[:200, :320]  # not square, not symmetric
    data = _jpeg(upright, orientation=orientation)
    prepared = DevicePrep(160, "cpu").from_encoded([data])
    expected, expected_box = letterbox(decode_image(data).pixels, 160)  # Pillow turns it
    turned = orientation in (5, 6, 7, 8)
    assert (expected_box.width, expected_box.height) == ((200, 320) if turned else (320, 200))
    assert prepared.letterboxes == [expected_box]
    assert np.abs(_pixels(prepared.tensor[0]).astype(int) - expected).max() <= 1


def test_greyscale_cmyk_and_png_are_decoded_on_the_host(scenes, monkeypatch) -> None:
    image = decode_image(scenes[0]).pixels
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    files = [_jpeg(image), _jpeg(image, "L"), _jpeg(image, "CMYK"), png.getvalue()]
    prep = DevicePrep(320, "cpu")
    sent_to_device: list[int] = []
    decode_on_device = prep._decode_jpegs

    def spy(data: list[bytes]) -> list[torch.Tensor | None]:
        sent_to_device.extend(files.index(item) for item in data)
        return decode_on_device(data)

    monkeypatch.setattr(prep, "_decode_jpegs", spy)
    prepared = prep.from_encoded(files)
    assert sent_to_device == [0]
    assert prepared.rows == [0, 1, 2, 3]
    for data, row in zip(files, prepared.tensor, strict=True):
        expected, _ = letterbox(decode_image(data).pixels, 320)
        assert np.abs(_pixels(row).astype(int) - expected).max() <= 1


# --- the detector through the device path -------------------------------------------------------


@pytest.fixture(scope="module")
def detectors() -> tuple[Detector, Detector]:
    """The 320 px model fp32 on the CPU: (host path, device path), one backend for both."""
    manifest = read_manifest(SMALL_DIR)
    backend = TorchBackend(SMALL_DIR / manifest.weights)
    config = DetectorConfig(confidence=manifest.confidence)
    host = Detector(backend, manifest.classes, manifest.input_size, config=config)
    device = Detector(backend, manifest.classes, manifest.input_size, config=config, on_device=True)
    return host, device


def test_the_agreement_check_sees_a_moved_a_missing_and_a_doubtful_box() -> None:
    mug = Detection("mug", "mug", 0.9, (10.0, 10.0, 50.0, 50.0))
    moved = Detection("mug", "mug", 0.9, (10.0, 10.0, 50.75, 50.0))
    doubtful = Detection("coaster", "coaster", 0.2, (0.0, 0.0, 60.0, 60.0))
    agreement = box_agreement([[mug], [mug, doubtful]], [[moved], []])
    assert agreement.largest_delta_px == pytest.approx(0.75)
    assert agreement.compared == 2
    assert agreement.unmatched == [mug]  # image 2's mug; the 0.2 coaster is below the floor


def test_boxes_through_the_device_path_are_within_half_a_pixel(detectors) -> None:
    host, device = detectors
    files = scene_jpegs(31_000, 6, 640) + scene_jpegs(31_100, 3, 960)
    reference = host.detect([decode_image(data).pixels for data in files])  # CPU fp32 path
    from_files = device.detect_encoded(files)
    assert all(isinstance(result, list) for result in from_files)
    agreement = box_agreement(reference, from_files)  # type: ignore[arg-type]
    assert agreement.unmatched == []
    assert agreement.compared >= 40
    assert agreement.largest_delta_px <= 0.5
    from_pixels = device.detect([decode_image(data).pixels for data in files])
    agreement = box_agreement(reference, from_pixels)
    assert agreement.unmatched == []
    assert agreement.largest_delta_px <= 0.5


@pytest.mark.parametrize("path", ["host", "device"])
def test_detect_encoded_answers_every_file_in_order(detectors, scenes, path: str) -> None:
    detector = dict(zip(["host", "device"], detectors, strict=True))[path]
    results = detector.detect_encoded(
        [scenes[0], b"not an image", _broken_huffman_table(scenes[1])]
    )
    assert isinstance(results[0], list)
    assert any(d.role == "table" for d in results[0])
    assert isinstance(results[1], ImageRejected)
    assert results[1].reason == "unsupported_format"
    assert isinstance(results[2], ImageRejected)
    assert results[2].reason == "decode_error"


def test_the_device_path_needs_a_backend_that_takes_tensors() -> None:
    class ArraysOnly:
        name, device = "onnx", "cpu"

        def infer(self, batch: np.ndarray) -> np.ndarray:
            return batch

        def memory_bytes(self) -> int:
            return 0

    with pytest.raises(ValueError, match="onnx backend"):
        Detector(ArraysOnly(), ["mug"], 320, on_device=True)


async def test_the_manager_switch(tmp_path: Path, scenes) -> None:
    def manager(backend: str, image_path: str) -> ModelManager:
        return ModelManager(
            ModelStore(tmp_path / "cache").resolve,
            device="cpu",
            backend=backend,  # type: ignore[arg-type]
            image_path=image_path,  # type: ignore[arg-type]
            export_dir=tmp_path / "onnx",
        )

    with pytest.raises(ValueError, match="torch backend"):
        manager("onnx", "device")
    assert not manager("torch", "auto").prepares_on_device  # auto: the device only on CUDA
    on_device, on_host = manager("torch", "device"), manager("torch", "host")
    await on_device.activate(SMALL_MODEL)
    await on_host.activate(SMALL_MODEL)
    assert on_device.active.detector.prep is not None
    assert on_host.active.detector.prep is None
    boxed = [letterbox(decode_image(data).pixels, 320) for data in scenes[:2]]
    images, boxes = [b[0] for b in boxed], [b[1] for b in boxed]
    _, expected = on_host.detect_letterboxed(images, boxes)
    _, got = on_device.detect_letterboxed(images, boxes)
    agreement = box_agreement(expected, got, floor=0.0)
    assert agreement.unmatched == []
    assert agreement.compared >= 8
    assert agreement.largest_delta_px <= 1e-3
