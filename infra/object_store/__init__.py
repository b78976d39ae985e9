"""One object-store interface, two implementations: S3/R2 (boto3) and a local directory."""

from pathlib import Path

from core.config import Settings
from infra.object_store.base import (
    InvalidObjectKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    StoredObject,
)
from infra.object_store.local import LocalObjectStore
from infra.object_store.s3 import S3ObjectStore


def create_object_store(settings: Settings) -> ObjectStore:
    """The store MUGPOS_OBJECT_STORE names: `s3`, or a local directory path."""
    if settings.uses_local_object_store:
        return LocalObjectStore(Path(settings.object_store).expanduser())
    return S3ObjectStore.from_settings(settings)


__all__ = [
    "InvalidObjectKey",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "S3ObjectStore",
    "StoredObject",
    "create_object_store",
]
