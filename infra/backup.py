"""MongoDB backups in the object store (R2 in production), and restoring them.

Layout: `backups/mongodb/{name}/{collection}.jsonl.gz` (one MongoDB Extended JSON document per
line, canonical mode, so datetimes, ObjectIds, binary and 64-bit integers come back as the same BSON
types) and `manifest.json` with each file's document count and sha256. The manifest is written last:
a backup without one is unfinished and is never restored, counted as the latest or kept by `--keep`.

Memory stays bounded: documents are read and compressed in batches, and since the object store
takes whole objects, a collection whose compressed file would pass `part_bytes` continues in
`{collection}.2.jsonl.gz`, `.3`, ... The manifest lists every file. A backup is not a snapshot:
each collection is read once, so writes during the run may or may not be in it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from motor.motor_asyncio import AsyncIOMotorDatabase

from core.release import installed_version
from infra.mongo import (
    ACTIVITY_LOGS,
    ANALYSIS_RESULTS,
    API_KEYS,
    DELIVERY_ATTEMPTS,
    DLQ_REPLAYS,
    RULES,
    SOURCE_STATES,
    SOURCE_STREAMS,
    SOURCES,
    USERS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
    ensure_indexes,
)
from infra.object_store import ObjectNotFound, ObjectStore
from infra.ws_tickets import WS_TICKETS

PREFIX = "backups/mongodb/"
MANIFEST = "manifest.json"
FORMAT = 1
# Everything a deployment cannot rebuild: rule and source histories (every version, for the
# audit of which version judged which image), accounts and API keys, tracked sources' held
# verdicts and open alerts, webhook endpoints (secrets encrypted with MUGPOS_ENCRYPTION_KEY: restore
# with the same key), results, the audit log, and which dead letters were replayed (so none is
# replayed twice after a restore), and the camera streams the streams service reads (their URLs
# may hold camera passwords: a backup is as secret as the database; their health is rewritten
# within seconds of a restore).
COLLECTIONS = (
    RULES,
    USERS,
    API_KEYS,
    SOURCES,
    SOURCE_STATES,
    SOURCE_STREAMS,
    WEBHOOK_ENDPOINTS,
    ANALYSIS_RESULTS,
    ACTIVITY_LOGS,
    DLQ_REPLAYS,
)
# Left out on purpose: retry counters forgotten after 7 days, 30-second WebSocket tickets, and the
# webhook delivery log (kept 30 days; a restore would not redeliver anything).
SKIPPED = (DELIVERY_ATTEMPTS, WS_TICKETS, WEBHOOK_DELIVERIES)
BATCH = 1000
PART_BYTES = 64 * 1024 * 1024
PROGRESS_EVERY = 50_000
# Names sort as they were made, which `latest` and `--keep` rely on.
NAME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_PART = re.compile(r"^[a-z_]+(\.[0-9]+)?\.jsonl\.gz$")

Progress = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup that cannot be found, read or restored; the message says which and why."""


@dataclass(frozen=True, slots=True)
class BackupFile:
    name: str
    collection: str
    documents: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    created_at: str
    mugpos_version: str
    database: str
    files: tuple[BackupFile, ...]

    def counts(self) -> dict[str, int]:
        """Documents per collection, in backup order."""
        counts: dict[str, int] = {}
        for file in self.files:
            counts[file.collection] = counts.get(file.collection, 0) + file.documents
        return counts

    def encode(self) -> bytes:
        body = {"format": FORMAT, **asdict(self), "collections": self.counts()}
        return json.dumps(body, indent=2).encode()

    @classmethod
    def decode(cls, name: str, data: bytes) -> Manifest:
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise BackupError(
                    f"backup {name} has manifest format {body.get('format')!r}; "
                    f"this mugpos reads format {FORMAT}"
                )
            files = tuple(BackupFile(**file) for file in body["files"])
            # The folder's name, not the recorded one: a backup copied elsewhere still restores.
            manifest = cls(
                name, body["created_at"], body["mugpos_version"], body["database"], files
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"backup {name}: {MANIFEST} is unreadable ({exc})") from None
        for file in files:
            if file.collection not in COLLECTIONS or not _PART.match(file.name):
                raise BackupError(
                    f"backup {name}: {MANIFEST} lists {file.name} of collection "
                    f"{file.collection!r}, which this mugpos does not restore"
                )
        return manifest


@dataclass(frozen=True, slots=True)
class Listing:
    """One backup as `mugpos backup --list` shows it; `manifest` is None while unfinished."""

    name: str
    size: int
    manifest: Manifest | None


def _key(name: str, file: str) -> str:
    return f"{PREFIX}{name}/{file}"


class _Part:
    """One gzip file being filled with a collection's documents."""

    def __init__(self, collection: str, number: int) -> None:
        self.collection = collection
        self.name = f"{collection}.jsonl.gz" if number == 1 else f"{collection}.{number}.jsonl.gz"
        self.documents = 0
        self._buffer = io.BytesIO()
        self._gzip = gzip.GzipFile(fileobj=self._buffer, mode="wb", mtime=0)

    def add(self, documents: list[dict]) -> None:
        lines = (json_util.dumps(doc, json_options=CANONICAL_JSON_OPTIONS) for doc in documents)
        self._gzip.write("".join(f"{line}\n" for line in lines).encode())
        self.documents += len(documents)

    @property
    def size(self) -> int:
        return self._buffer.tell()

    async def upload(self, store: ObjectStore, backup: str) -> BackupFile:
        self._gzip.close()
        data = self._buffer.getvalue()
        await store.put(_key(backup, self.name), data, content_type="application/gzip")
        digest = hashlib.sha256(data).hexdigest()
        return BackupFile(self.name, self.collection, self.documents, len(data), digest)


async def _dump(
    db: AsyncIOMotorDatabase,
    store: ObjectStore,
    backup: str,
    collection: str,
    *,
    batch_size: int,
    part_bytes: int,
    progress: Progress,
) -> list[BackupFile]:
    files: list[BackupFile] = []
    part = _Part(collection, 1)
    cursor = db[collection].find({}, batch_size=batch_size)
    total = 0
    while batch := await cursor.to_list(length=batch_size):
        part.add(batch)
        total += len(batch)
        if total // PROGRESS_EVERY != (total - len(batch)) // PROGRESS_EVERY:
            progress(f"{collection}: {total} documents so far")
        if part.size >= part_bytes:
            files.append(await part.upload(store, backup))
            part = _Part(collection, len(files) + 1)
    if part.documents or not files:  # an empty collection still gets its (empty) file
        files.append(await part.upload(store, backup))
    progress(f"{collection}: {total} documents")
    return files


async def backup(
    db: AsyncIOMotorDatabase,
    store: ObjectStore,
    *,
    batch_size: int = BATCH,
    part_bytes: int = PART_BYTES,
    progress: Progress = lambda _: None,
) -> Manifest:
    """Back up COLLECTIONS of `db` under a new name; the manifest goes last."""
    now = datetime.now(UTC)
    name = now.strftime(NAME_FORMAT)
    files: list[BackupFile] = []
    for collection in COLLECTIONS:
        files += await _dump(
            db,
            store,
            name,
            collection,
            batch_size=batch_size,
            part_bytes=part_bytes,
            progress=progress,
        )
    manifest = Manifest(name, now.isoformat(), installed_version(), db.name, tuple(files))
    await store.put(_key(name, MANIFEST), manifest.encode(), content_type="application/json")
    return manifest


def _is_ours(name: str) -> bool:
    try:
        datetime.strptime(name, NAME_FORMAT)
    except ValueError:
        return False
    return True


async def _scan(store: ObjectStore) -> dict[str, tuple[int, bool]]:
    """Every backup under PREFIX, newest first: its size in bytes and whether it is finished."""
    found: dict[str, tuple[int, bool]] = {}
    for info in await store.list(PREFIX):
        name, _, file = info.key.removeprefix(PREFIX).partition("/")
        size, finished = found.get(name, (0, False))
        found[name] = (size + info.size, finished or file == MANIFEST)
    return {name: found[name] for name in sorted(found, reverse=True) if _is_ours(name)}


async def list_backups(store: ObjectStore) -> list[Listing]:
    """Every backup, newest first, unfinished ones included."""
    return [
        Listing(name, size, await read_manifest(store, name) if finished else None)
        for name, (size, finished) in (await _scan(store)).items()
    ]


async def read_manifest(store: ObjectStore, name: str) -> Manifest:
    """The manifest of backup `name`, or of the newest finished one for `latest`."""
    if name == "latest":
        finished = [found for found, (_, done) in (await _scan(store)).items() if done]
        if not finished:
            raise BackupError(f"no finished backup under {PREFIX}")
        name = finished[0]
    if not _is_ours(name):
        raise BackupError(f"{name!r} is not a backup name (`mugpos backup --list` shows them)")
    try:
        stored = await store.get(_key(name, MANIFEST))
    except ObjectNotFound:
        raise BackupError(
            f"no finished backup {name} under {PREFIX} (`mugpos backup --list` shows them)"
        ) from None
    return Manifest.decode(name, stored.data)


async def _fetch(store: ObjectStore, manifest: Manifest, file: BackupFile) -> bytes:
    """The file's bytes, refused unless they match the manifest's sha256."""
    key = _key(manifest.name, file.name)
    try:
        data = (await store.get(key)).data
    except ObjectNotFound:
        raise BackupError(f"backup {manifest.name} is incomplete: {key} is missing") from None
    if hashlib.sha256(data).hexdigest() != file.sha256:
        raise BackupError(
            f"backup {manifest.name} is corrupted: {key} does not match its sha256 in {MANIFEST}"
        )
    return data


async def _occupied(db: AsyncIOMotorDatabase, collections: list[str]) -> list[str]:
    return [c for c in collections if await db[c].find_one({}, projection={"_id": 1})]


async def restore(
    db: AsyncIOMotorDatabase,
    store: ObjectStore,
    manifest: Manifest,
    *,
    force: bool = False,
    batch_size: int = BATCH,
    progress: Progress = lambda _: None,
) -> dict[str, int]:
    """Restore a backup into `db`; returns documents per collection.

    Collections that already hold documents are refused unless `force`, which drops them; then
    every file is checked against the manifest before anything is written, so a corrupted backup
    leaves the database as it was.
    """
    collections = list(manifest.counts())
    if (occupied := await _occupied(db, collections)) and not force:
        raise BackupError(
            f"database {db.name} already has documents in {', '.join(occupied)}: restore into "
            "an empty database, or pass --force to drop and replace them"
        )
    for file in manifest.files:
        await _fetch(store, manifest, file)
    progress(f"backup {manifest.name}: {len(manifest.files)} files match their checksums")
    for collection in collections:
        await db[collection].drop()
    for file in manifest.files:
        inserted = await _load(db, file, await _fetch(store, manifest, file), batch_size)
        if inserted != file.documents:
            raise BackupError(
                f"backup {manifest.name}: {file.name} holds {inserted} documents, "
                f"its manifest says {file.documents}"
            )
        progress(f"{file.collection}: {inserted} documents from {file.name}")
    await ensure_indexes(db)
    return manifest.counts()


async def _load(db: AsyncIOMotorDatabase, file: BackupFile, data: bytes, batch_size: int) -> int:
    inserted = 0
    batch: list[dict] = []
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as lines:
        for line in lines:
            batch.append(json_util.loads(line, json_options=CANONICAL_JSON_OPTIONS))
            if len(batch) == batch_size:
                await db[file.collection].insert_many(batch)
                inserted, batch = inserted + len(batch), []
    if batch:
        await db[file.collection].insert_many(batch)
    return inserted + len(batch)


async def prune(store: ObjectStore, keep: int) -> list[str]:
    """Delete the backups older than the newest `keep` finished ones; returns their names.

    Unfinished backups newer than the oldest one kept are left alone: one may still be running.
    """
    if keep < 1:
        raise ValueError("keep at least one backup")
    backups = await _scan(store)
    kept = [name for name, (_, finished) in backups.items() if finished][:keep]
    if len(kept) < keep:
        return []
    doomed = [name for name in backups if name < kept[-1]]
    for name in doomed:
        for info in await store.list(f"{PREFIX}{name}/"):
            await store.delete(info.key)
    return doomed
