"""A source's `max_age_s` through a real worker: frames older than it when the pipeline reaches
them (a camera's backlog after an outage) become `expired` results without inference; current
frames of the same source, and pictures of other sources however old, are analysed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.config import Settings
from core.sources import SourceSpec
from infra import mongo
from infra.sources_store import SourcesRepository
from schemas.topics import TopicNames
from tests.integration.kafka_io import collect, publish, results
from tests.integration.workers import scene_jpeg

SOURCE = "door-cam"
MAX_AGE_S = 60.0


async def _register(settings: Settings) -> None:
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        spec = SourceSpec.model_validate({"name": "door", "max_age_s": MAX_AGE_S})
        await SourcesRepository(db).put(SOURCE, spec, "test")
    finally:
        client.close()


async def test_a_backlog_older_than_max_age_expires_and_current_frames_are_analysed(
    pipeline: Settings,
) -> None:
    await _register(pipeline)
    now = datetime.now(UTC)
    picture = scene_jpeg(7, 320)

    def frame(rid: str, source: str, taken: datetime) -> tuple:
        headers = [("source-id", source.encode()), ("captured-at", taken.isoformat().encode())]
        return (rid, picture, headers, 0)

    stale = [frame(f"stale-{i}", SOURCE, now - timedelta(minutes=10, seconds=i)) for i in range(12)]
    current = [frame(f"current-{i}", SOURCE, now + timedelta(seconds=i)) for i in range(2)]
    other = [frame("other-old", "hall-cam", now - timedelta(hours=1))]  # no max_age_s
    await publish(pipeline, [*stale, *current, *other])
    ids = [item[0] for item in (*stale, *current, *other)]
    got = results(await collect(pipeline, TopicNames(pipeline.topic_prefix).results, ids, 180))
    final = {rid: found[-1] for rid, found in got.items()}
    assert {final[item[0]].status for item in stale} == {"expired"}
    expired = final["stale-0"]
    assert expired.error is not None
    assert (expired.error.stage, expired.error.reason) == ("preprocess", "expired")
    assert "up to 60 s old" in expired.error.message
    assert expired.detections == []
    assert expired.model is None, "no inference for an expired frame"
    assert [final[item[0]].status for item in current] == ["ok", "ok"]
    assert final["other-old"].status == "ok"
