"""Object store on S3-compatible storage through boto3: Cloudflare R2 in production, moto in tests.

boto3 is blocking, so every call runs on a small thread pool of its own and the event loop never
waits on the network.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.config import Settings
from infra.object_store.base import (
    DEFAULT_CONTENT_TYPE,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    StoredObject,
    normalize_metadata,
    validate_key,
)

T = TypeVar("T")
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


_OURS = "mugpos-expire:"  # the ID prefix of the lifecycle rules this system manages


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str = "auto",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_threads: int = 8,
    ) -> None:
        self.bucket = bucket
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": None if region == "auto" and endpoint_url is None else region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": Config(
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=max_threads,
                # R2 (like moto) wants path-style addressing for custom endpoints.
                s3={"addressing_style": "path"},
                # Checksums only where S3 requires them: R2 rejects the aws-chunked CRC32 trailer
                # boto3 >= 1.36 adds to every put by default, and it costs CPU. Our own calls need
                # no client-side parameter validation: together ~1 ms of CPU less per put.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                parameter_validation=False,
            ),
        }
        self._max_threads = max_threads
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        secret = settings.s3_secret_access_key
        return cls(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
        )

    def _s3(self) -> Any:
        if self._client is None:
            self._client = boto3.session.Session().client("s3", **self._client_args)
        return self._client

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_threads, thread_name_prefix="s3")
        loop = asyncio.get_running_loop()
        # In the caller's context, so the request's S3 span (tracing) belongs to its trace.
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def _call(self, key: str | None, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._s3(), operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if key is not None and code in _NOT_FOUND:
                raise ObjectNotFound(key) from None
            raise ObjectStoreError(f"s3 {operation} on {self.bucket}/{key or ''}: {exc}") from exc
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, ...
            raise ObjectStoreError(f"s3 {operation} on {self.bucket}/{key or ''}: {exc}") from exc

    @staticmethod
    def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType", DEFAULT_CONTENT_TYPE),
            etag=str(response.get("ETag", "")).strip('"'),
            last_modified=response["LastModified"],
            metadata=dict(response.get("Metadata", {})),
        )

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        validate_key(key)
        body, meta = bytes(data), normalize_metadata(metadata)
        response = await self._run(
            self._call,
            key,
            "put_object",
            Key=key,
            Body=body,
            ContentType=content_type,
            Metadata=meta,
        )
        # Everything the caller needs is known already: no HEAD round trip per object.
        return ObjectInfo(
            key=key,
            size=len(body),
            content_type=content_type,
            etag=str(response.get("ETag", "")).strip('"'),
            last_modified=datetime.now(UTC),
            metadata=meta,
        )

    async def get(self, key: str) -> StoredObject:
        validate_key(key)

        def fetch() -> StoredObject:
            response = self._call(key, "get_object", Key=key)
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            return StoredObject(info=self._info(key, response), data=data)

        return await self._run(fetch)

    async def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        response = await self._run(self._call, key, "head_object", Key=key)
        return self._info(key, response)

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._run(self._call, key, "delete_object", Key=key)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        def walk() -> list[ObjectInfo]:
            paginator = self._s3().get_paginator("list_objects_v2")
            found = []
            try:
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                    for item in page.get("Contents", []):
                        found.append(
                            ObjectInfo(
                                key=item["Key"],
                                size=int(item["Size"]),
                                content_type=DEFAULT_CONTENT_TYPE,
                                etag=str(item.get("ETag", "")).strip('"'),
                                last_modified=item["LastModified"],
                            )
                        )
            except (ClientError, BotoCoreError) as exc:
                raise ObjectStoreError(f"s3 list {self.bucket}/{prefix}: {exc}") from exc
            return sorted(found, key=lambda info: info.key)

        return await self._run(walk)

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (tests, demo, first start against MinIO)."""

        def create() -> None:
            try:
                self._s3().head_bucket(Bucket=self.bucket)
            except ClientError:
                self._s3().create_bucket(Bucket=self.bucket)

        await self._run(create)

    async def set_expiry(self, days_by_prefix: dict[str, int | None]) -> dict[str, int]:
        """Lifecycle rules expiring objects under each prefix after its days (None: no rule),
        as `mugpos setup` sets them; rules of other prefixes (an operator's own) are kept.
        Returns the rules of ours now in force, prefix -> days."""

        def apply() -> dict[str, int]:
            try:
                current = self._call(None, "get_bucket_lifecycle_configuration")["Rules"]
            except ObjectStoreError as exc:
                if "NoSuchLifecycleConfiguration" not in str(exc):
                    raise
                current = []
            others = [r for r in current if not str(r.get("ID", "")).startswith(_OURS)]
            ours = {p: d for p, d in days_by_prefix.items() if d is not None}
            rules = others + [
                {
                    "ID": f"{_OURS}{prefix}",
                    "Filter": {"Prefix": prefix},
                    "Status": "Enabled",
                    "Expiration": {"Days": days},
                }
                for prefix, days in sorted(ours.items())
            ]
            if rules:
                self._call(
                    None,
                    "put_bucket_lifecycle_configuration",
                    LifecycleConfiguration={"Rules": rules},
                )
            elif current:
                self._call(None, "delete_bucket_lifecycle")
            return ours

        return await self._run(apply)

    async def health(self) -> str:
        await self._run(self._call, None, "head_bucket")
        return f"bucket {self.bucket} reachable"

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
