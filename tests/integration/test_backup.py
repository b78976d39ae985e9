"""MongoDB backups through moto's S3 server and secantusdb: restored into a fresh database the data
is the same BSON (same types, same bytes), passwords and API keys still verify, and a tampered or
misdirected restore is refused before anything is written."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import bson
import pytest
from bson import Binary, Decimal128, Int64
from cryptography.fernet import Fernet
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from control.console import mugpos_argv
from core.config import Settings, settings_env
from core.rules import parse_rule
from core.sources import SourceSpec
from infra import backup as backups
from infra import mongo
from infra.launchers import MotoS3Server, SecantusServer
from infra.launchers.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from infra.object_store import S3ObjectStore
from infra.rules_store import RulesRepository
from infra.sources_store import SourcesRepository
from infra.users_store import UsersRepository

PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(mongo_server: SecantusServer, s3_server: MotoS3Server, unique_name: str) -> Settings:
    """MongoDB and S3 only: a backup needs neither Kafka nor Redis."""
    return Settings(
        _env_file=None,
        mongodb_uri=mongo_server.uri,
        mongodb_db=unique_name,
        object_store="s3",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket=unique_name,
        s3_region="us-east-1",
        s3_access_key_id=ACCESS_KEY_ID,
        s3_secret_access_key=SECRET_ACCESS_KEY,
        encryption_key=Fernet.generate_key().decode(),
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncIOMotorClient]:
    client = mongo.create_client(settings)
    yield client
    client.close()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[S3ObjectStore]:
    store = S3ObjectStore.from_settings(settings)
    await store.ensure_bucket()
    yield store
    await store.close()


@pytest.fixture
def db(client: AsyncIOMotorClient, settings: Settings) -> AsyncIOMotorDatabase:
    return mongo.database(client, settings)


@pytest.fixture
def fresh(client: AsyncIOMotorClient, settings: Settings) -> AsyncIOMotorDatabase:
    """Another, empty database on the same server."""
    return client[f"{settings.mongodb_db}_restored"]


async def _populate(db: AsyncIOMotorDatabase, settings: Settings) -> dict[str, str]:
    """Two rules and a source with two versions each, users with an e-mail, an API key, results
    with the BSON types a JSON round trip would lose. Returns the ids to look up afterwards."""
    await mongo.ensure_indexes(db)
    rules = RulesRepository(db)
    coaster = await rules.create(parse_rule("Every mug must be on a coaster."), "ann")
    await rules.update(
        coaster.rule_id, parse_rule("Every mug must be on a coaster (critical)."), "bob"
    )
    handles = await rules.create(parse_rule("Handles should face right."), "ann")
    await rules.disable(handles.rule_id, "ann")
    key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    users = UsersRepository(db, key)
    await users.add_user("alice", PASSWORD, "admin", email="alice@example.com")
    await users.add_user("bob", PASSWORD, "viewer")
    api_key = await users.add_api_key("ci", "analyst")
    sources = SourcesRepository(db)
    await sources.put("till-1", SourceSpec(name="till"), "ann")
    await sources.put("till-1", SourceSpec(name="till, left end"), "bob")
    await db[mongo.ANALYSIS_RESULTS].insert_many(
        {
            "request_id": f"req-{n}",
            "timestamp": datetime(2026, 11, 27, 9, n, tzinfo=UTC),
            "count": Int64(n),
            "score": float(n) / 4,
            "price": Decimal128(Decimal("1.10")),
            "raw": Binary(bytes([n, 0, 255]), 0),
            "uuid": Binary(uuid.UUID(int=n).bytes, 4),
            "detections": [{"label": "mug", "box": [1.0, 2.0, 3.5, 4.0]}] * n,
        }
        for n in range(7)
    )
    return {"rule": coaster.rule_id, "api_key": api_key}


async def _bson(db: AsyncIOMotorDatabase) -> dict[str, list[bytes]]:
    """Every backed-up collection as encoded BSON, by _id: equal only if every type is equal."""
    return {
        name: [bson.encode(doc) for doc in await db[name].find().sort("_id", 1).to_list(None)]
        for name in backups.COLLECTIONS
    }


def test_every_collection_is_backed_up_or_left_out_on_purpose() -> None:
    assert set(mongo.INDEXES) | {mongo.SOURCE_STATES} <= set(backups.COLLECTIONS) | set(
        backups.SKIPPED
    )


async def test_a_restore_into_a_fresh_database_is_the_same_data(
    db: AsyncIOMotorDatabase,
    fresh: AsyncIOMotorDatabase,
    store: S3ObjectStore,
    settings: Settings,
) -> None:
    ids = await _populate(db, settings)
    await db[mongo.SOURCE_STATES].insert_one({"_id": "till-1", "tracks": [], "held": {}})
    # Tiny batches and parts: analysis_results spans several files.
    manifest = await backups.backup(db, store, batch_size=2, part_bytes=1)
    names = [info.key.rsplit("/", 1)[1] for info in await store.list(backups.PREFIX)]
    assert "manifest.json" in names
    assert {"rules.jsonl.gz", "analysis_results.jsonl.gz", "analysis_results.4.jsonl.gz"} <= set(
        names
    )
    assert manifest.counts()[mongo.RULES] == 4
    assert manifest.counts()[mongo.ANALYSIS_RESULTS] == 7

    chosen = await backups.read_manifest(store, "latest")
    assert chosen == manifest
    restored = await backups.restore(fresh, store, chosen)
    assert restored == manifest.counts()
    assert await _bson(fresh) == await _bson(db)

    key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    users = UsersRepository(fresh, key)
    assert (await users.authenticate("alice", PASSWORD)).role == "admin"
    assert await users.authenticate("alice", "not the password") is None
    assert await users.email("alice") == "alice@example.com"
    assert (await users.resolve_api_key(ids["api_key"])).role == "analyst"
    history = await RulesRepository(fresh).history(ids["rule"])
    assert [(r.version, r.created_by) for r in history] == [(2, "bob"), (1, "ann")]
    source = await SourcesRepository(fresh).get("till-1")
    assert (source.version, source.spec.name) == (2, "till, left end")
    indexes = await fresh[mongo.RULES].index_information()
    assert "rule_version_unique" in indexes


async def test_a_tampered_file_is_refused_before_anything_is_written(
    db: AsyncIOMotorDatabase, fresh: AsyncIOMotorDatabase, store: S3ObjectStore
) -> None:
    await db[mongo.ANALYSIS_RESULTS].insert_one({"request_id": "req-1"})
    manifest = await backups.backup(db, store)
    key = f"{backups.PREFIX}{manifest.name}/users.jsonl.gz"
    original = (await store.get(key)).data
    await store.put(key, original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(backups.BackupError, match=f"corrupted: {key} does not match"):
        await backups.restore(fresh, store, manifest)
    assert await fresh.list_collection_names() == []
    with pytest.raises(backups.BackupError, match="corrupted"):
        await backups.restore(db, store, manifest, force=True)  # nothing dropped either
    assert await db[mongo.ANALYSIS_RESULTS].count_documents({}) == 1


async def test_a_non_empty_database_needs_force(
    db: AsyncIOMotorDatabase, store: S3ObjectStore, settings: Settings
) -> None:
    ids = await _populate(db, settings)
    manifest = await backups.backup(db, store)
    rules = RulesRepository(db)
    await rules.update(ids["rule"], parse_rule("Every mug must be on a coaster."), "eve")
    with pytest.raises(backups.BackupError, match="already has documents in rules, users"):
        await backups.restore(db, store, manifest)
    assert len(await rules.history(ids["rule"])) == 3
    assert await backups.restore(db, store, manifest, force=True) == manifest.counts()
    assert len(await rules.history(ids["rule"])) == 2


async def test_keep_prunes_older_finished_backups_only(
    db: AsyncIOMotorDatabase, store: S3ObjectStore
) -> None:
    made = [(await backups.backup(db, store)).name for _ in range(3)]
    running = datetime.now(UTC).strftime(backups.NAME_FORMAT)  # newest, no manifest yet
    await store.put(f"{backups.PREFIX}{running}/rules.jsonl.gz", b"")
    assert (await backups.read_manifest(store, "latest")).name == made[-1]
    assert await backups.prune(store, 2) == [made[0]]
    listed = await backups.list_backups(store)
    assert [(b.name, b.manifest is None) for b in listed] == [
        (running, True),
        (made[2], False),
        (made[1], False),
    ]
    with pytest.raises(backups.BackupError, match=f"no finished backup {made[0]}"):
        await backups.read_manifest(store, made[0])


async def test_backup_and_restore_latest_through_the_command_line(
    db: AsyncIOMotorDatabase,
    fresh: AsyncIOMotorDatabase,
    store: S3ObjectStore,  # makes the bucket
    settings: Settings,
) -> None:
    await _populate(db, settings)
    env = {**os.environ, **settings_env(settings), "COLUMNS": "250"}

    def mugpos(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            mugpos_argv(*args),
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = mugpos("backup", "--keep", "1")
    assert made.returncode == 0, made.stderr
    assert "rules 4, users 2, api_keys 1, sources 2" in made.stdout
    name = made.stdout.split()[1].rstrip(":")
    assert "analysis_results: 7 documents" in made.stderr  # progress goes to stderr

    into_fresh = {"MUGPOS_MONGODB_DB": fresh.name}
    restored = mugpos("restore", "latest", **into_fresh)
    assert restored.returncode == 0, restored.stderr
    assert "rules 4, users 2" in restored.stdout
    assert await _bson(fresh) == await _bson(db)

    again = mugpos("restore", "latest", **into_fresh)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1, again.stderr
    assert "--force" in again.stderr
    listed = mugpos("backup", "--list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if name in line]
    assert "16 (rules 4, users 2, api_keys 1, sources 2" in row
