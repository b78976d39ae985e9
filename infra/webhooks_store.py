"""Webhook endpoints (`webhook_endpoints`, by name, the signing secret encrypted with Fernet) and
the delivery log (`webhook_deliveries`, one document per alert event and endpoint, kept 30 days).

The delivery log is also what makes delivery idempotent: an alert event read twice (a redelivered
frame republishes its events under the same ids, a dispatcher restarts before committing) finds its
document delivered and is not posted again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import DESCENDING, ReturnDocument

from core.webhooks import Format
from infra.mongo import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS

DeliveryStatus = Literal["pending", "delivered", "dead_lettered", "refused"]
SECRET_BYTES = 32


class SecretsUnavailable(RuntimeError):
    """Endpoints need MUGPOS_ENCRYPTION_KEY (their secrets are stored encrypted), or the stored
    secret was encrypted with another key."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    url: str
    format: Format
    enabled: bool
    created_at: datetime
    updated_at: datetime
    updated_by: str | None

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but the secret."""
        return {
            "name": self.name,
            "url": self.url,
            "format": self.format,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def _endpoint(doc: dict[str, Any]) -> Endpoint:
    return Endpoint(
        doc["_id"],
        doc["url"],
        doc["format"],
        doc["enabled"],
        doc["created_at"],
        doc["updated_at"],
        doc.get("updated_by"),
    )


class WebhookEndpoints:
    def __init__(self, db: AsyncIOMotorDatabase, encryption_key: str | None) -> None:
        self._endpoints = db[WEBHOOK_ENDPOINTS]
        self._fernet = Fernet(encryption_key.encode()) if encryption_key else None

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            raise SecretsUnavailable(
                "webhook endpoints need MUGPOS_ENCRYPTION_KEY: their signing secrets are stored "
                "encrypted"
            )
        return self._fernet

    async def put(
        self,
        name: str,
        url: str,
        fmt: Format,
        *,
        enabled: bool = True,
        rotate_secret: bool = False,
        by: str | None = None,
    ) -> tuple[Endpoint, str | None]:
        """Create or change an endpoint; the secret is returned (once) when it is new: the
        endpoint's first, or one asked for with `rotate_secret`."""
        cipher = self._cipher()
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "url": url,
            "format": fmt,
            "enabled": enabled,
            "updated_at": now,
            "updated_by": by,
        }
        secret = secrets.token_urlsafe(SECRET_BYTES)
        sealed = cipher.encrypt(secret.encode()).decode()
        on_insert: dict[str, Any] = {"created_at": now}
        (fields if rotate_secret else on_insert)["secret_encrypted"] = sealed
        doc = await self._endpoints.find_one_and_update(
            {"_id": name},
            {"$set": fields, "$setOnInsert": on_insert},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        # Fernet tokens are unique (random IV): ours is stored only if it was new or rotated.
        return _endpoint(doc), secret if doc["secret_encrypted"] == sealed else None

    async def get(self, name: str) -> Endpoint | None:
        doc = await self._endpoints.find_one({"_id": name})
        return _endpoint(doc) if doc else None

    async def list(self) -> list[Endpoint]:
        return [_endpoint(d) async for d in self._endpoints.find({}).sort("_id")]

    async def delete(self, name: str) -> bool:
        return (await self._endpoints.delete_one({"_id": name})).deleted_count == 1

    async def with_secret(self, name: str) -> tuple[Endpoint, str] | None:
        """The endpoint and its signing secret, for a delivery; None when it does not exist."""
        doc = await self._endpoints.find_one({"_id": name})
        if doc is None or "secret_encrypted" not in doc:
            return None
        try:
            secret = self._cipher().decrypt(doc["secret_encrypted"].encode()).decode()
        except InvalidToken:
            raise SecretsUnavailable(
                f"the secret of webhook endpoint {name!r} was encrypted with another "
                "MUGPOS_ENCRYPTION_KEY"
            ) from None
        return _endpoint(doc), secret


class WebhookDeliveries:
    """The delivery log."""

    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self._log = db[WEBHOOK_DELIVERIES]

    async def open(self, alert: dict[str, Any], endpoint: str) -> dict[str, Any]:
        """The log entry of delivering `alert` to `endpoint`, created `pending` if it is new."""
        delivery_id = f"{alert['alert_id']}:{endpoint}"
        now = datetime.now(UTC)
        doc = await self._log.find_one_and_update(
            {"_id": delivery_id},
            {
                "$setOnInsert": {
                    "alert_id": alert["alert_id"],
                    "endpoint": endpoint,
                    "event": alert["event"],
                    "source_id": alert["source_id"],
                    "rule_id": alert["rule_id"],
                    "dedup_key": alert["dedup_key"],
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return doc

    async def attempted(
        self, delivery_id: str, url: str, status_code: int | None, error: str | None
    ) -> None:
        await self._log.update_one(
            {"_id": delivery_id},
            {
                "$inc": {"attempts": 1},
                "$set": {
                    "url": url,
                    "last_status_code": status_code,
                    "last_error": error,
                    "updated_at": datetime.now(UTC),
                },
            },
        )

    async def finish(
        self, delivery_id: str, status: DeliveryStatus, error: str | None = None
    ) -> None:
        now = datetime.now(UTC)
        fields: dict[str, Any] = {"status": status, "updated_at": now}
        if status == "delivered":
            fields["delivered_at"] = now
        if error is not None:
            fields["last_error"] = error
        await self._log.update_one({"_id": delivery_id}, {"$set": fields})

    async def list(
        self,
        *,
        endpoint: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first, with `delivery_id` for `_id`."""
        query: dict[str, Any] = {}
        if endpoint is not None:
            query["endpoint"] = endpoint
        if status is not None:
            query["status"] = status
        cursor = self._log.find(query).sort("created_at", DESCENDING).limit(limit)
        return [{"delivery_id": d.pop("_id"), **d} async for d in cursor]
