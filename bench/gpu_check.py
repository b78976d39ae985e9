"""GPU check for a lent H100/H200, in one call: throughput fp16 vs fp32, memory, accuracy, loop.

    python bench/gpu_check.py                 # on the GPU machine (full sweep)
    python bench/gpu_check.py --quick --device cpu   # small sizes, runs here and in the tests

Measures, for input sizes and batch sizes: the median batch time of repeated runs (CUDA events on
a GPU, warm-up excluded), images/s, peak memory; the largest box difference between fp16 and fp32;
and the inference-stage loop (decode JPEG -> letterbox -> batch -> model -> boxes) at the best
batch. Prints a table last and writes JSON to $OUT/gpu_check.json when OUT is set.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.models.backends import TorchBackend, resolve_device
from core.models.detector import Detector
from core.models.manifest import read_manifest
from core.synth.render import scene_jpegs

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models" / "mugdet-synth" / "1.1.0"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="320,640")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="sizes 64,96, batches 1,2, 2 repeats")
    parser.add_argument("--model-dir", type=Path, default=SHIPPED)
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

    # Accuracy of fp16 against fp32 on real scenes at the model's own input size.
    images = [
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
        for b in scenes_jpeg(8, manifest.input_size)
    ]
    box_delta = None
    if "fp16" in precisions:
        full = Detector(precisions["fp32"], manifest.classes, manifest.input_size).detect(images)
        half = Detector(precisions["fp16"], manifest.classes, manifest.input_size).detect(images)
        deltas = [
            abs(a - b)
            for fa, fh in zip(full, half, strict=True)
            for da, dh in zip(fa, fh, strict=False)
            for a, b in zip(da.box, dh.box, strict=True)
        ]
        box_delta = round(max(deltas), 4) if deltas else 0.0

    # The inference-stage loop at the best batch of the model's input size.
    best_precision = "fp16" if cuda else "fp32"
    candidates = [r for r in rows if r["precision"] == best_precision]
    best = max(candidates, key=lambda r: r["images_per_s"])
    detector = Detector(precisions[best_precision], manifest.classes, manifest.input_size)
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
    print(
        f"inference loop (decode->letterbox->model->boxes) at batch {best['batch']} "
        f"{best_precision}: {loop_rate:.1f} img/s"
    )


if __name__ == "__main__":
    main()
