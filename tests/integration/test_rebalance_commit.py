"""A rebalance commits what the worker finished before it, so the next owner redoes nothing.

Periodic commits are pushed out of the way (every 10 minutes): the only commit that can save
the first worker's work is the one it makes when a second worker's arrival revokes its
partitions. Faust drops its record of acknowledged offsets before it calls the app's revocation
handlers, so that commit has to run ahead of them (streams.revocation).
"""

from __future__ import annotations

from core.config import Settings
from infra.provision import provision
from schemas.topics import TopicNames
from tests.conftest import settings_for
from tests.integration.kafka_io import (
    by_request_id,
    collect,
    eventually,
    not_exactly_once,
    owned,
    publish,
    uncommitted,
    wait_all_committed,
    worker_statuses,
)
from tests.integration.workers import WorkerProcess, scene_jpeg

ENV = {
    "MUGPOS_COMMIT_INTERVAL_S": "600",
    "MUGPOS_MODEL": "mugdet-synth:1.0.0",  # 320 px: cheap on CPU
    "MUGPOS_HEARTBEAT_INTERVAL_S": "1",
}


async def _both_own_images(settings: Settings, pids: set[int]) -> bool:
    images = TopicNames(settings.topic_prefix).images
    statuses = await worker_statuses(settings)
    return all(pid in statuses and owned(statuses[pid], images) for pid in pids)


async def test_a_rebalance_commits_the_work_done_before_it(
    kafka_broker, mongo_server, redis_server, s3_server, unique_name, tmp_path
) -> None:
    settings = settings_for(unique_name, kafka_broker, mongo_server, redis_server, s3_server)
    await provision(settings)
    names = TopicNames(settings.topic_prefix)
    ids = [f"rebalance-{i}" for i in range(9)]
    workers = [WorkerProcess(settings, tmp_path, "first", ENV)]
    try:
        await publish(settings, [(rid, scene_jpeg(i, 320), []) for i, rid in enumerate(ids)])
        await collect(settings, names.results, ids, 180)
        assert await uncommitted(settings, names.consumed()), "committed before any rebalance"
        workers.append(WorkerProcess(settings, tmp_path, "second", ENV))
        await wait_all_committed(settings, names.consumed(), 120)
        # Both own image partitions now: had anything been left uncommitted, it was read again.
        pids = {w.process.pid for w in workers}
        await eventually(lambda: _both_own_images(settings, pids), 60, "both workers assigned")
        records = await collect(settings, names.results, ids, 30)
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0]
    assert not_exactly_once(by_request_id(records), ids) == {}
