"""ModelManager: LRU eviction within a memory budget, and hot swap under a running batch stream."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from core.models.manager import ModelBudgetError, ModelManager, ModelMismatchError
from infra.model_store import ModelStore
from tests.model_fixtures import copy_version


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    for version in ("1", "2", "3"):
        copy_version(tmp_path / "models", version)
    return ModelStore(tmp_path / "cache", model_dir=tmp_path / "models")


def _manager(
    store: ModelStore, tmp_path: Path, budget: int, backend: str = "torch"
) -> ModelManager:
    return ModelManager(
        store.resolve,
        device="cpu",
        backend=backend,  # type: ignore[arg-type]
        cpu_budget_bytes=budget,
        export_dir=tmp_path / "onnx",
    )


async def test_lru_eviction_keeps_the_active_and_most_recent(store, tmp_path: Path) -> None:
    probe = _manager(store, tmp_path, 1 << 40)
    size = (await probe.get("mugdet-synth:1")).memory_bytes
    manager = _manager(store, tmp_path, int(size * 2.5))
    await manager.activate("mugdet-synth:1")
    await manager.get("mugdet-synth:2")
    assert manager.loaded() == ["mugdet-synth:1", "mugdet-synth:2"]
    await manager.get("mugdet-synth:3")  # no room for three: 2 goes, 1 is active
    assert manager.loaded() == ["mugdet-synth:1", "mugdet-synth:3"]
    assert manager.used_bytes() <= manager.budget_bytes
    await manager.get("mugdet-synth:1")  # touching 1 makes 3 the least recently used
    await manager.get("mugdet-synth:2")
    assert manager.loaded() == ["mugdet-synth:1", "mugdet-synth:2"]


async def test_a_model_larger_than_the_budget_is_refused(store, tmp_path: Path) -> None:
    with pytest.raises(ModelBudgetError, match="budget"):
        await _manager(store, tmp_path, 1024).get("mugdet-synth:1")


async def test_a_version_for_another_input_size_is_refused_before_loading(
    store, tmp_path: Path
) -> None:
    manager = _manager(store, tmp_path, 1 << 30)
    active = await manager.activate("mugdet-synth:1")
    size = active.detector.input_size
    assert (await manager.activate("mugdet-synth:2", input_size=size)).ref == "mugdet-synth:2"
    other = "mugdet-synth:1.0.0"  # bundled, made for 320 px input (the copies above take 640)
    assert size == 640
    with pytest.raises(ModelMismatchError, match="restart"):
        await manager.activate(other, input_size=size)
    assert manager.active.ref == "mugdet-synth:2"
    assert other not in manager.loaded()


async def test_hot_swap_loses_no_batch_in_flight(store, tmp_path: Path) -> None:
    manager = _manager(store, tmp_path, 1 << 30)
    await manager.activate("mugdet-synth:1")
    images = [np.zeros((240, 320, 3), dtype=np.uint8)] * 2
    served: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def stream() -> None:  # a worker's inference thread, batch after batch
        while not stop.is_set():
            try:
                ref, results = manager.detect(images)
                assert len(results) == len(images)
                served.append(ref)
            except BaseException as exc:
                errors.append(exc)

    async def batches_served(count: int) -> None:
        while len(served) < count:  # noqa: ASYNC110 - the producer is a plain thread
            await asyncio.sleep(0.05)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        await asyncio.wait_for(batches_served(3), 60)
        await manager.activate("mugdet-synth:2")
        await asyncio.wait_for(batches_served(len(served) + 3), 60)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert served[0] == "mugdet-synth:1"
    assert served[-1] == "mugdet-synth:2"
    first_new = served.index("mugdet-synth:2")
    assert set(served[first_new:]) == {"mugdet-synth:2"}  # never back to the old version


async def test_onnx_backend_exports_once_and_reuses_it(store, tmp_path: Path) -> None:
    manager = _manager(store, tmp_path, 1 << 30, backend="onnx")
    model = await manager.activate("mugdet-synth:1")
    assert model.detector.backend.name == "onnx"
    exported = list((tmp_path / "onnx").rglob("*.onnx"))
    assert len(exported) == 1
    again = _manager(store, tmp_path, 1 << 30, backend="onnx")
    await again.activate("mugdet-synth:1")
    assert list((tmp_path / "onnx").rglob("*.onnx")) == exported


def test_onnx_export_leaves_the_model_folder_untouched(store, tmp_path: Path) -> None:
    from core.models.backends import export_onnx
    from tests.model_fixtures import SHIPPED

    before = sorted(p.name for p in SHIPPED.iterdir())
    out = export_onnx(SHIPPED / "model.pt", tmp_path / "exports" / "m.onnx", 320)
    assert out.is_file()
    assert sorted(p.name for p in SHIPPED.iterdir()) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]
