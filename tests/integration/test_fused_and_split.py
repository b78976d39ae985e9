"""A fused worker (every stage in one process, in memory) and a split deployment (one worker per
stage, over the stage topics) give identical results for the same images."""

from __future__ import annotations

from pathlib import Path

from core.config import Settings
from schemas.topics import TopicNames
from tests.integration.kafka_io import collect, publish, results
from tests.integration.workers import WorkerProcess, scene_jpeg

SCENES = 12


def _comparable(result) -> dict:  # what the image decides; not ids, times or timings
    return {
        "status": result.status,
        "image": result.image.model_dump(exclude={"object_key"}) if result.image else None,
        "detections": [d.model_dump() for d in result.detections],
        "positioning": result.positioning,
        "verdicts": [v.model_dump() for v in result.verdicts],
        "model": result.model.model_dump() if result.model else None,
    }


async def _run(settings: Settings, workers: list[WorkerProcess], prefix: str) -> dict:
    ids = [f"{prefix}-{i:02d}" for i in range(SCENES)]
    names = TopicNames(settings.topic_prefix)
    try:
        await publish(settings, [(rid, scene_jpeg(i, 480), []) for i, rid in enumerate(ids)])
        published = results(await collect(settings, names.results, ids, 180))
    finally:
        for worker in workers:
            assert worker.stop() == 0
    return {rid.split("-", 1)[1]: published[rid][0] for rid in ids}


async def test_fused_and_split_workers_give_identical_results(
    deployment: Settings, tmp_path: Path
) -> None:
    fused = await _run(deployment, [WorkerProcess(deployment, tmp_path, "fused")], "fused")
    split = await _run(
        deployment,
        [
            WorkerProcess(deployment, tmp_path, s, stage=s)
            for s in ("preprocess", "inference", "analysis")
        ],
        "split",
    )
    assert set(fused) == set(split)
    for key in fused:
        assert fused[key].status == "ok"
        assert _comparable(fused[key]) == _comparable(split[key]), key
    assert any(r.detections for r in fused.values())  # the scenes do hold mugs
