"""`mugpos synth`, `mugpos train` and `mugpos models list|push|pull|import|build-engine`."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.progress import Progress
from rich.table import Table

from control.console import console, load_or_exit
from core.config import Settings

models_app = typer.Typer(help="List, publish and fetch model versions.", no_args_is_help=True)


def synth(
    out: Annotated[Path, typer.Option(help="Output folder (images/, labels/, truth/).")],
    count: Annotated[int, typer.Option(min=1)] = 100,
    size: Annotated[int, typer.Option(min=64, help="Square image size in pixels.")] = 640,
    seed: Annotated[int, typer.Option()] = 0,
    varied: Annotated[
        bool, typer.Option(help="More looks per class, as `train --varied`.")
    ] = False,
) -> None:
    """Generate top-down table scenes with YOLO labels and ground truth in centimetres."""
    from core.synth.dataset import write_dataset

    with Progress(console=console) as progress:
        task = progress.add_task("scenes", total=count)
        data = write_dataset(
            out,
            count,
            size,
            seed,
            progress=lambda done: progress.update(task, completed=done),
            varied=varied,
        )
    console.print(f"{count} scenes in {out} (YOLO dataset file {data})")


def train(
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Train on generated scenes (required).")
    ] = False,
    epochs: Annotated[int, typer.Option(min=1)] = 50,
    imgsz: Annotated[int, typer.Option(help="320 or 640.")] = 320,
    seed: Annotated[int, typer.Option()] = 1,
    scenes: Annotated[int, typer.Option(min=10, help="Training scenes.")] = 300,
    version: Annotated[str, typer.Option()] = "1.0.0",
    out: Annotated[Path | None, typer.Option(help="Where weights + manifest go.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Datasets and runs.")] = None,
    init: Annotated[Path | None, typer.Option(help="Continue from these .pt weights.")] = None,
    batch: Annotated[int, typer.Option(min=1)] = 16,
    val_scenes: Annotated[int, typer.Option(min=10, help="Validation scenes.")] = 60,
    minutes: Annotated[
        float | None,
        typer.Option(min=0.1, help="Wall-clock budget; the epochs are fitted into it."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    workers: Annotated[int, typer.Option(min=1, help="Data-loading processes.")] = 2,
    varied: Annotated[
        bool,
        typer.Option(
            help="More looks per class (surfaces, coaster materials and 8-12 cm sizes, "
            "drinks, saucers, look-alikes, colour casts, JPEG, lens distortion)."
        ),
    ] = False,
) -> None:
    """Train YOLOv8n on generated scenes, offline; writes weights and a manifest."""
    from core.models.training import Hardware, TrainRecipe
    from core.models.training import train as run_training

    if not synthetic:
        console.print(
            "[red]error:[/] only --synthetic training is supported (no datasets can be fetched)"
        )
        raise typer.Exit(2)
    if imgsz % 32:
        console.print("[red]error:[/] --imgsz must be a multiple of 32")
        raise typer.Exit(2)
    recipe = TrainRecipe(
        epochs=epochs,
        imgsz=imgsz,
        seed=seed,
        train_scenes=scenes,
        val_scenes=val_scenes,
        batch=batch,
        version=version,
        init_weights=str(init) if init else None,
        time_hours=minutes / 60 if minutes else None,
        varied=varied,
    )
    target = out or Path("assets/models") / recipe.name / version
    work = workdir or Path(tempfile.mkdtemp(prefix="mugpos-train-"))
    manifest = run_training(recipe, work, target, console.print, Hardware(device, workers))
    console.print(f"wrote {manifest.ref} to {target}: {manifest.metrics}")


def _store(settings: Settings):
    from infra.model_store import model_store_from_settings
    from infra.object_store import create_object_store

    return model_store_from_settings(settings, create_object_store(settings))


@models_app.command("list")
def list_models() -> None:
    """Every model version in MUGPOS_MODEL_DIR, the object store and the bundle."""
    from infra.object_store import ObjectStoreError

    store = _store(load_or_exit())
    try:
        found = asyncio.run(store.list())
    except ObjectStoreError as exc:
        console.print(f"[yellow]object store skipped:[/] {exc}", highlight=False)
        store.object_store = None
        found = asyncio.run(store.list())
    table = Table("model", "source")
    for ref, source in found:
        table.add_row(ref, source)
    console.print(table)


@models_app.command()
def push(directory: Annotated[Path, typer.Argument(help="A folder with manifest.json.")]) -> None:
    """Verify a local model version and upload it to models/{name}/{version}/ in the store."""
    manifest = asyncio.run(_store(load_or_exit()).push(directory))
    console.print(f"pushed {manifest.ref} ({len(manifest.files)} file(s))")


@models_app.command()
def pull(ref: Annotated[str, typer.Argument(help="name:version")]) -> None:
    """Resolve a model version through the sources, downloading and verifying it if needed."""
    files = asyncio.run(_store(load_or_exit()).resolve(ref))
    console.print(f"{files.manifest.ref} from {files.source} at {files.path}")


@models_app.command("import")
def import_model(
    weights: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="YOLO .pt weights.")],
    name: Annotated[str, typer.Option(help="Model name, e.g. coco-yolov8n.")],
    version: Annotated[str, typer.Option(help="Version, e.g. 1.0.0.")],
    input_size: Annotated[
        int | None,
        typer.Option(min=32, help="Letterbox size; default: the size it was trained at, else 640."),
    ] = None,
    class_map: Annotated[
        str,
        typer.Option(
            help="auto, coco (cup→mug, dining table→table, laptop/keyboard/cell phone/book→"
            "hazard; no coasters), mugpos (classes named after the roles) or builtin."
        ),
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(help="Where the version goes; default: MUGPOS_MODEL_DIR/NAME/VERSION."),
    ] = None,
    push_to_store: Annotated[
        bool, typer.Option("--push", help="Also upload it to the object store.")
    ] = False,
    smoke: Annotated[bool, typer.Option(help="Run one detection on a generated scene.")] = True,
) -> None:
    """Make a model version of your own YOLO weights: manifest (sha256, classes read from the
    weights, input size, class map), a smoke detection, and optionally the object store."""
    from core.models.importer import Preset

    if class_map not in get_args(Preset):
        console.print(f"[red]error:[/] unknown --class-map {class_map!r}", highlight=False)
        raise typer.Exit(2)
    settings = load_or_exit()
    target = out or (settings.model_dir / name / version if settings.model_dir else None)
    if target is None and not push_to_store:
        console.print("[red]error:[/] set MUGPOS_MODEL_DIR, or give --out or --push")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="mugpos-import-") as staging:
        directory = target or Path(staging) / name / version
        _import(weights, directory, name, version, input_size, class_map, smoke)
        if push_to_store:
            manifest = asyncio.run(_store(settings).push(directory))
            console.print(f"pushed {manifest.ref} to the object store")


def _import(
    weights: Path,
    directory: Path,
    name: str,
    version: str,
    input_size: int | None,
    class_map: str,
    smoke: bool,
) -> None:
    from core.models.class_map import ClassMap
    from core.models.importer import ImportRefused, import_weights, smoke_detect

    try:
        manifest = import_weights(
            weights,
            directory,
            name=name,
            version=version,
            input_size=input_size,
            preset=class_map,  # type: ignore[arg-type]
        )
    except ImportRefused as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    roles = ClassMap(manifest.class_map).roles_seen(manifest.classes)
    console.print(
        f"wrote {manifest.ref} to {directory}: {len(manifest.classes)} classes, input "
        f"{manifest.input_size} px, class map {manifest.recipe['class_map_preset']} "
        f"(roles: {', '.join(roles)})",
        highlight=False,
    )
    if "coaster" not in roles:
        console.print("note: this model cannot see coasters; coaster rules will be not applicable")
    if smoke:
        report = smoke_detect(directory, manifest)
        found = ", ".join(f"{n} {role}" for role, n in sorted(report.roles.items())) or "nothing"
        console.print(
            f"smoke detection on a generated scene: {report.detections} detections ({found}) "
            f"in {report.seconds * 1000:.0f} ms",
            highlight=False,
        )


@models_app.command("build-engine")
def build_engine(
    ref: Annotated[str | None, typer.Argument(help="name:version; default: MUGPOS_MODEL.")] = None,
    batch: Annotated[
        int | None,
        typer.Option(min=1, help="Images per engine call; default: MUGPOS_MAX_BATCH."),
    ] = None,
) -> None:
    """Build the detector's TensorRT engine into the model cache, ahead of serving (minutes).

    A worker serves with it when the GPU model, TensorRT version, weights, input size and batch
    (MUGPOS_MAX_BATCH) all match its own; otherwise with torch, saying why in its log."""
    import time

    import torch

    from core.models.backends import resolve_device
    from core.models.engine import EngineSpec, build_blocker, tensorrt_version
    from core.models.engine import build_engine as build
    from core.models.manifest import sha256_file
    from infra.model_store import engine_dir

    settings = load_or_exit()
    cuda = torch.cuda.is_available()
    device = resolve_device(settings.device) if cuda else "cpu"
    problem = build_blocker(device, cuda, tensorrt_version())
    if problem:
        console.print(f"[red]error:[/] {problem}", highlight=False)
        raise typer.Exit(2)
    files = asyncio.run(_store(settings).resolve(ref or settings.model))
    spec = EngineSpec.of(files.manifest, sha256_file(files.weights), batch or settings.max_batch)
    started = time.perf_counter()
    path = build(files.weights, engine_dir(settings), spec, device)
    console.print(f"built {path} in {time.perf_counter() - started:.0f} s")
