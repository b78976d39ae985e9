"""How long data is kept, on the real services: MongoDB's TTL index on results (secantusdb
honours TTL), the S3 bucket's lifecycle rules (moto stores them), `mugpos gc` for a store
without lifecycle, and `MUGPOS_KEEP_ORIGINALS=failures` through a real worker."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from core.config import Settings
from core.synth.sequence import desk_frames
from infra import mongo
from infra.object_store import LocalObjectStore, S3ObjectStore
from infra.provision import provision
from infra.retention import RESULTS_TTL_INDEX, sweep
from schemas.topics import TopicNames
from tests.conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.integration.kafka_io import collect, publish, results
from tests.integration.workers import WorkerProcess


async def _ttl(db, expected_s: int | None) -> None:  # type: ignore[no-untyped-def]
    indexes = {ix["name"]: ix async for ix in db[mongo.ANALYSIS_RESULTS].list_indexes()}
    assert indexes.get(RESULTS_TTL_INDEX, {}).get("expireAfterSeconds") == expected_s


async def test_results_expire_by_a_ttl_index_that_follows_the_setting(
    service_settings: Settings,
) -> None:
    await provision(service_settings.model_copy(update={"result_retention_days": 1}))
    client = mongo.create_client(service_settings)
    try:
        db = mongo.database(client, service_settings)
        await _ttl(db, 86_400)
        now = datetime.now(UTC)
        await db[mongo.ANALYSIS_RESULTS].insert_many(
            [
                {"request_id": "old", "status": "ok", "timestamp": now - timedelta(days=2)},
                {"request_id": "new", "status": "ok", "timestamp": now - timedelta(hours=2)},
            ]
        )
        await db.command("secantusAdmin.pruneTtl")  # the server's 60 s sweep, now
        left = await db[mongo.ANALYSIS_RESULTS].distinct("request_id")
        assert left == ["new"]
        await provision(service_settings.model_copy(update={"result_retention_days": 30}))
        await _ttl(db, 30 * 86_400)
        await provision(service_settings)  # unset: kept until deleted
        await _ttl(db, None)
    finally:
        client.close()


def _s3(settings: Settings):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def _lifecycle(settings: Settings) -> dict[str, int]:
    s3 = _s3(settings)
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=settings.s3_bucket)["Rules"]
    except s3.exceptions.ClientError:
        return {}
    return {r["Filter"]["Prefix"]: r["Expiration"]["Days"] for r in rules}


async def test_bucket_lifecycle_rules_follow_the_settings_and_keep_an_operator_s_own(
    service_settings: Settings,
) -> None:
    await provision(service_settings)
    assert _lifecycle(service_settings) == {}
    operators_own = {
        "ID": "exports-quarterly",
        "Filter": {"Prefix": "exports/"},
        "Status": "Enabled",
        "Expiration": {"Days": 90},
    }
    _s3(service_settings).put_bucket_lifecycle_configuration(
        Bucket=service_settings.s3_bucket, LifecycleConfiguration={"Rules": [operators_own]}
    )
    settings = service_settings.model_copy(
        update={"original_retention_days": 7, "result_retention_days": 30}
    )
    done = await provision(settings)
    assert "user-uploads/ after 7 day(s)" in done["object store lifecycle"]
    assert _lifecycle(service_settings) == {
        "exports/": 90,
        "user-uploads/": 7,
        "analysis-results/": 30,
    }
    await provision(service_settings)
    assert _lifecycle(service_settings) == {"exports/": 90}


async def test_gc_deletes_what_is_past_its_retention_in_a_store_without_lifecycle(
    tmp_path: Path,
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    for key in ("user-uploads/cam/old.jpg", "user-uploads/cam/new.jpg", "analysis-results/x.json"):
        await store.put(key, b"data")
    old = (datetime.now(UTC) - timedelta(days=10)).timestamp()
    for key in ("user-uploads/cam/old.jpg", "analysis-results/x.json"):
        os.utime(store.root / key, (old, old))
    deleted = await sweep(store, {"user-uploads/": 7, "analysis-results/": None})
    assert deleted == {"user-uploads/": 1}
    assert [i.key for i in await store.list()] == [
        "analysis-results/x.json",
        "user-uploads/cam/new.jpg",
    ]


def _jpeg(image) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


async def test_only_the_originals_of_failures_are_kept_when_asked(
    deployment: Settings, tmp_path: Path
) -> None:
    frames = desk_frames(1000, 480)  # the mug on its coaster (passes), then off it (fails)
    names = TopicNames(deployment.topic_prefix)
    worker = WorkerProcess(deployment, tmp_path, "worker", {"MUGPOS_KEEP_ORIGINALS": "failures"})
    try:
        await publish(
            deployment, [("passes", _jpeg(frames["on"]), []), ("fails", _jpeg(frames["off"]), [])]
        )
        got = results(await collect(deployment, names.results, ["passes", "fails"], 240))
    finally:
        worker.stop()
    passing, failing = got["passes"][-1], got["fails"][-1]
    assert passing.status == failing.status == "ok"
    assert passing.image is not None
    assert failing.image is not None
    assert passing.image.object_key is None
    assert failing.image.object_key is not None
    store = S3ObjectStore.from_settings(deployment)
    try:
        kept = [i.key for i in await store.list("user-uploads/")]
    finally:
        await store.close()
    assert kept == [failing.image.object_key], "the passing original was deleted"
