"""GPU check for a lent H100/H200, in one call: throughput fp16 vs fp32, memory, accuracy, loop.

    python bench/gpu_check.py                 # on the GPU machine (full sweep)
    python bench/gpu_check.py --sizes 640 --batches 8,32,64 --build-engine   # + TensorRT
    python bench/gpu_check.py --quick --device cpu   # small sizes, runs here and in the tests

Measures, for input sizes and batch sizes: the median batch time of repeated runs (CUDA events on
a GPU, warm-up excluded), images/s, peak memory. At the best batch of the model's own input size:
the model alone on input already on the device, the image path on the device
(core.models.device_prep: JPEG bytes -> nvJPEG -> letterbox -> model -> boxes), and the host loop
(decode JPEG -> letterbox -> batch -> model -> boxes). With a TensorRT engine (found in
--engine-dir, or built there first with --build-engine): the same with the engine. Box agreement
of each fast path (fp16, the device image path, the engine) with the fp32 path on the CPU.
Prints a table last and writes JSON to $OUT/gpu_check.json when OUT is set.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.models.agreement import box_agreement
from core.models.backends import TensorBackend, TorchBackend, resolve_device
from core.models.detector import Detector
from core.models.engine import (
    EngineBackend,
    EngineSpec,
    build_blocker,
    build_engine,
    choose_engine,
    gpu_name,
    tensorrt_version,
)
from core.models.manifest import (
    DEFAULT_MODEL,
    ModelManifest,
    bundled_dir,
    read_manifest,
    sha256_file,
)
from core.models.types import Detection
from core.synth.render import scene_jpegs

SHIPPED = bundled_dir(DEFAULT_MODEL)  # the default detector


def device_info(device: str) -> dict[str, object]:
    info: dict[str, object] = {
        "device": device,
        "torch": torch.__version__,
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    return info


def time_batches(backend: TorchBackend, batch: np.ndarray, repeats: int) -> float:
    """Median seconds per batch, warm-up excluded."""
    backend.infer(batch)
    samples = []
    cuda = backend.device.startswith("cuda")
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            backend.infer(batch)
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / 1000)
        else:
            started = time.perf_counter()
            backend.infer(batch)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def scenes_jpeg(count: int, size: int) -> list[bytes]:
    return scene_jpegs(10_000, count, size)


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of `call` (whose result is on the host, so the GPU is done), warm-up
    excluded."""
    call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def delta(reference: list[list[Detection]], other: list) -> dict[str, object]:
    agreement = box_agreement(reference, other)
    return {
        "max_box_delta_px": round(agreement.largest_delta_px, 4),
        "compared": agreement.compared,
        "unmatched": len(agreement.unmatched),
    }


def image_path(
    backend: TensorBackend, manifest: ModelManifest, batch: list[bytes], repeats: int
) -> dict[str, float]:
    """Images/s at one batch: the model alone on input already on the device, preparing that
    input on the device from JPEG bytes, and the two together down to boxes."""
    detector = Detector(backend, manifest.classes, manifest.input_size, on_device=True)
    assert detector.prep is not None
    tensor = detector.prep.from_encoded(batch).tensor

    def prepare() -> None:
        detector.prep.from_encoded(batch)  # type: ignore[union-attr]
        if backend.device.startswith("cuda"):
            torch.cuda.synchronize()

    rates = {
        "model_alone": median_seconds(lambda: backend.infer_tensor(tensor), repeats),
        "prepare_on_device": median_seconds(prepare, repeats),
        "jpeg_to_boxes": median_seconds(lambda: detector.detect_encoded(batch), repeats),
    }
    return {name: round(len(batch) / seconds, 1) for name, seconds in rates.items()}


def tensorrt_engine(
    args: argparse.Namespace, device: str, weights: Path, spec: EngineSpec
) -> tuple[EngineBackend | None, dict[str, object]]:
    """The engine for `spec` from --engine-dir, built first with --build-engine; or why none.
    A failed build or load is reported, not raised: the rest of the check still counts."""
    report: dict[str, object] = {"batch": spec.batch, "tensorrt": tensorrt_version()}
    found = choose_engine(args.engine_dir, spec, gpu_name(device), tensorrt_version())
    try:
        if args.build_engine and found.path is None:
            blocker = build_blocker(device, torch.cuda.is_available(), tensorrt_version())
            if blocker:
                report["status"] = blocker
                return None, report
            started = time.perf_counter()
            build_engine(weights, args.engine_dir, spec, device)
            report["build_s"] = round(time.perf_counter() - started, 1)
            found = choose_engine(args.engine_dir, spec, gpu_name(device), tensorrt_version())
        report["status"] = found.reason
        return (EngineBackend(found.path, device) if found.path else None), report
    except Exception as exc:
        report["status"] = f"failed: {type(exc).__name__}: {exc}"
        return None, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="320,640")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="sizes 64,96, batches 1,2, 2 repeats")
    parser.add_argument("--model-dir", type=Path, default=SHIPPED)
    parser.add_argument(
        "--engine-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mugpos-engines",
        help="where TensorRT engines are looked for (a worker's: $MUGPOS_MODEL_CACHE_DIR/engines)",
    )
    parser.add_argument(
        "--build-engine",
        action="store_true",
        help="build the TensorRT engine for the best batch first when none is there (minutes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.batches, args.repeats = "64,96", "1,2", 2
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    manifest = read_manifest(args.model_dir)
    weights = args.model_dir / manifest.weights
    precisions = {"fp32": TorchBackend(weights, device, half=False)}
    if cuda:
        precisions["fp16"] = TorchBackend(weights, device, half=True)

    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for batch_size in [int(b) for b in args.batches.split(",")]:
            batch = np.random.default_rng(0).random((batch_size, 3, size, size), dtype=np.float32)
            for precision, backend in precisions.items():
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                seconds = time_batches(backend, batch, args.repeats)
                peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
                rows.append(
                    {
                        "size": size,
                        "batch": batch_size,
                        "precision": precision,
                        "ms_per_batch": round(seconds * 1000, 3),
                        "images_per_s": round(batch_size / seconds, 1),
                        "peak_mib": round(peak, 1) if peak is not None else None,
                    }
                )
                print(
                    f"size {size} batch {batch_size:3d} {precision}: "
                    f"{batch_size / seconds:9.1f} img/s",
                    flush=True,
                )

    # The best batch at the model's own input size (any size in a quick run).
    best_precision = "fp16" if cuda else "fp32"
    candidates = [r for r in rows if r["precision"] == best_precision]
    own_size = [r for r in candidates if r["size"] == manifest.input_size] or candidates
    best = max(own_size, key=lambda r: r["images_per_s"])
    fast = precisions[best_precision]

    # Box agreement with the fp32 path on the CPU, on scenes at the model's own input size.
    encoded = scenes_jpeg(8, manifest.input_size)
    images = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in encoded]
    cpu_fp32 = precisions["fp32"] if not cuda else TorchBackend(weights, "cpu", half=False)
    reference = Detector(cpu_fp32, manifest.classes, manifest.input_size).detect(images)
    gpu_fp32 = Detector(precisions["fp32"], manifest.classes, manifest.input_size).detect(images)
    deltas = {"fp32_vs_cpu_fp32": delta(reference, gpu_fp32)}
    box_delta = None
    if "fp16" in precisions:
        half = Detector(precisions["fp16"], manifest.classes, manifest.input_size).detect(images)
        deltas["fp16_vs_fp32"] = delta(gpu_fp32, half)
        box_delta = deltas["fp16_vs_fp32"]["max_box_delta_px"]
    on_device = Detector(fast, manifest.classes, manifest.input_size, on_device=True)
    deltas[f"device_path_{best_precision}_vs_cpu_fp32"] = delta(
        reference, on_device.detect_encoded(encoded)
    )

    # The image path on the device at the best batch, next to the model alone.
    batch_files = scenes_jpeg(best["batch"], manifest.input_size)
    device_path = {
        "batch": best["batch"],
        "precision": best_precision,
        "input_size": manifest.input_size,
        "images_per_s": image_path(fast, manifest, batch_files, args.repeats),
    }

    # A TensorRT engine at the same batch, when there is (or can be built) one.
    spec = EngineSpec.of(manifest, sha256_file(weights), best["batch"])
    engine, engine_report = tensorrt_engine(args, device, weights, spec)
    if engine is not None:
        engine_report["images_per_s"] = image_path(engine, manifest, batch_files, args.repeats)
        on_engine = Detector(engine, manifest.classes, manifest.input_size, on_device=True)
        deltas["engine_vs_cpu_fp32"] = delta(reference, on_engine.detect_encoded(encoded))

    # The inference-stage loop on the host at the best batch.
    detector = Detector(fast, manifest.classes, manifest.input_size)
    encoded = scenes_jpeg(best["batch"], manifest.input_size) * 4
    started = time.perf_counter()
    for offset in range(0, len(encoded), best["batch"]):
        chunk = encoded[offset : offset + best["batch"]]
        decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in chunk]
        detector.detect(decoded)
    loop_rate = len(encoded) / (time.perf_counter() - started)

    report = {
        "info": device_info(device),
        "model": manifest.ref,
        "rows": rows,
        "fp16_vs_fp32_max_box_delta_px": box_delta,
        "box_agreement": deltas,
        "device_image_path": device_path,
        "tensorrt_engine": engine_report,
        "loop": {
            "batch": best["batch"],
            "precision": best_precision,
            "input_size": manifest.input_size,
            "images_per_s": round(loop_rate, 1),
        },
    }
    if os.environ.get("OUT"):
        target = Path(os.environ["OUT"]) / "gpu_check.json"
        target.write_text(json.dumps(report, indent=2))

    print()
    print(f"device: {report['info']}")
    print(f"{'size':>5} {'batch':>5} {'prec':>5} {'ms/batch':>10} {'img/s':>10} {'peak MiB':>9}")
    for r in rows:
        peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        print(
            f"{r['size']:>5} {r['batch']:>5} {r['precision']:>5} {r['ms_per_batch']:>10.2f} "
            f"{r['images_per_s']:>10.1f} {peak:>9}"
        )
    print(
        f"fp16 vs fp32 max box delta: {box_delta if box_delta is not None else 'n/a (no GPU)'} px"
    )
    for name, agreement in deltas.items():
        print(f"box agreement {name}: {agreement}")
    print(
        f"device image path at batch {best['batch']} {best_precision} "
        f"({manifest.input_size} px), img/s: {device_path['images_per_s']}"
    )
    print(f"tensorrt engine: {engine_report}")
    print(
        f"inference loop (decode->letterbox->model->boxes) at batch {best['batch']} "
        f"{best_precision}: {loop_rate:.1f} img/s"
    )


if __name__ == "__main__":
    main()
