"""Object store in a local directory: the embedded demo's store and a drop-in for tests.

Bytes live at `root/<key>`; content type and metadata in a JSON sidecar under `root/.meta/`, so a
listing shows only objects. Writes go to a temporary file and are renamed, so a reader never sees
half an object.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from infra.object_store.base import (
    DEFAULT_CONTENT_TYPE,
    InvalidObjectKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StoredObject,
    normalize_metadata,
    validate_key,
)

_META_DIR = ".meta"


class LocalObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _paths(self, key: str) -> tuple[Path, Path]:
        validate_key(key)
        if key == _META_DIR or key.startswith(f"{_META_DIR}/"):
            raise InvalidObjectKey(f"keys under {_META_DIR}/ are reserved by the local store")
        return self.root / key, self.root / _META_DIR / f"{key}.json"

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _put(
        self, key: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        data_path, meta_path = self._paths(key)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()  # S3's ETag for a plain put
        sidecar = {"content_type": content_type, "etag": etag, "metadata": metadata}
        self._atomic_write(meta_path, json.dumps(sidecar).encode())
        self._atomic_write(data_path, data)
        return self._head(key)

    def _head(self, key: str) -> ObjectInfo:
        data_path, meta_path = self._paths(key)
        try:
            stat = data_path.stat()
            sidecar = json.loads(meta_path.read_text())
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        if not data_path.is_file():
            raise ObjectNotFound(key)
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            content_type=sidecar["content_type"],
            etag=sidecar["etag"],
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            metadata=sidecar["metadata"],
        )

    def _get(self, key: str) -> StoredObject:
        info = self._head(key)
        try:
            data = self._paths(key)[0].read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return StoredObject(info=info, data=data)

    def _delete(self, key: str) -> None:
        data_path, meta_path = self._paths(key)
        data_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)

    def _list(self, prefix: str) -> list[ObjectInfo]:
        if not self.root.exists():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and _META_DIR in dirnames:
                dirnames.remove(_META_DIR)
            for filename in filenames:
                if filename.startswith(".tmp-"):
                    continue
                key = (Path(dirpath) / filename).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    info = self._head(key)
                    found.append(
                        ObjectInfo(
                            info.key, info.size, info.content_type, info.etag, info.last_modified
                        )
                    )
        return sorted(found, key=lambda info: info.key)

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        return await asyncio.to_thread(
            self._put, key, bytes(data), content_type, normalize_metadata(metadata)
        )

    async def get(self, key: str) -> StoredObject:
        return await asyncio.to_thread(self._get, key)

    async def head(self, key: str) -> ObjectInfo:
        return await asyncio.to_thread(self._head, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, prefix)

    async def health(self) -> str:
        def probe() -> str:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(f"{self.root} is not writable")
            return f"local directory {self.root}"

        return await asyncio.to_thread(probe)
