"""The object-store contract shared by the S3/R2 and local-directory implementations."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


class ObjectStoreError(RuntimeError):
    """Base of every object-store failure."""


class ObjectNotFound(ObjectStoreError, KeyError):
    """No object under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no object under key {self.key!r}"


class InvalidObjectKey(ObjectStoreError, ValueError):
    """A key or metadata entry that would not behave the same on every backend."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str
    etag: str
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredObject:
    info: ObjectInfo
    data: bytes


def validate_key(key: str) -> str:
    """Reject keys that are unsafe as paths or differ between S3 and a filesystem."""
    if not key or len(key.encode()) > 1024:
        raise InvalidObjectKey("an object key must be 1-1024 bytes")
    if key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise InvalidObjectKey(f"invalid object key {key!r}: no leading/trailing '/', '\\' or NUL")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidObjectKey(f"invalid object key {key!r}: empty, '.' or '..' segment")
    return key


def normalize_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Lower-case ASCII keys and ASCII values: what S3 keeps, so both backends return the same."""
    normalized: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        lowered = key.lower()
        if not _METADATA_KEY.match(lowered):
            raise InvalidObjectKey(f"metadata key {key!r}: use letters, digits, '-' and '_'")
        if not isinstance(value, str) or not value.isascii():
            raise InvalidObjectKey(f"metadata {key!r}: values must be ASCII strings")
        normalized[lowered] = value
    return normalized


class ObjectStore(ABC):
    """Async object storage. Keys use '/' as separator; see `infra.object_store.keys`."""

    @abstractmethod
    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo: ...

    @abstractmethod
    async def get(self, key: str) -> StoredObject:
        """The object's bytes and info; ObjectNotFound when absent."""

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo:
        """The object's info without its bytes; ObjectNotFound when absent."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; deleting an absent key is not an error (as on S3)."""

    @abstractmethod
    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key (metadata not filled in)."""

    @abstractmethod
    async def health(self) -> str:
        """Raise when the store cannot be used; otherwise a one-line description for /ready."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release clients and threads (nothing to release by default)."""
