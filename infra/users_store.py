"""API users (argon2id password hashes, e-mail encrypted with Fernet) and hashed API keys.

An API key is `mpk_<key_id>_<secret>`; only sha256(secret) is stored. The secret has 256 bits of
entropy, so a fast hash is enough there, unlike passwords which get a slow KDF.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo.errors import DuplicateKeyError

from core.access import ROLES, Principal, Role
from infra.mongo import API_KEYS, USERS

KEY_PREFIX = "mpk_"
ROLE_CACHE_S = 5.0
_HASHER = PasswordHasher()
# Verifying against this keeps an unknown user's login as slow as a known user's.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class UserExists(ValueError):
    pass


class UserNotFound(LookupError):
    pass


class KeyNotFound(LookupError):
    pass


class LastAdmin(ValueError):
    """The change would leave no enabled admin, and so nobody able to manage accounts."""


class UsersRepository:
    def __init__(self, db: AsyncIOMotorDatabase, encryption_key: str | None) -> None:
        self._users = db[USERS]
        self._keys = db[API_KEYS]
        self._fernet = Fernet(encryption_key.encode()) if encryption_key else None
        self._roles: dict[str, tuple[Role | None, float]] = {}

    async def add_user(
        self, username: str, password: str, role: Role, email: str | None = None
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if len(password) < 12:
            raise ValueError("passwords need at least 12 characters")
        if email and self._fernet is None:
            raise ValueError("storing an e-mail needs MUGPOS_ENCRYPTION_KEY (it is encrypted)")
        document = {
            "username": username,
            "password_hash": await asyncio.to_thread(_HASHER.hash, password),
            "role": role,
            "email_encrypted": self._fernet.encrypt(email.encode()).decode()
            if email and self._fernet
            else None,
            "disabled": False,
            "created_at": datetime.now(UTC),
        }
        try:
            await self._users.insert_one(document)
        except DuplicateKeyError:
            raise UserExists(f"user {username!r} already exists") from None

    async def authenticate(self, username: str, password: str) -> Principal | None:
        user = await self._users.find_one({"username": username})
        try:
            # Off the event loop: one argon2 check takes ~0.1-0.6 s of CPU, which would stall
            # every other request of this API process meanwhile.
            await asyncio.to_thread(
                _HASHER.verify, user["password_hash"] if user else _DUMMY_HASH, password
            )
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.get("disabled"):
            return None
        return Principal(username, user["role"], "user")

    async def email(self, username: str) -> str | None:
        user = await self._users.find_one({"username": username})
        if not user or not user.get("email_encrypted") or self._fernet is None:
            return None
        return self._fernet.decrypt(user["email_encrypted"].encode()).decode()

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (or enable again) a user: a disabled one can neither log in nor use a token.
        This process forgets the user's cached role at once; other API processes within
        ROLE_CACHE_S."""
        before = await self._users.find_one_and_update(
            {"username": username},
            {"$set": {"disabled": disabled, "updated_at": datetime.now(UTC)}},
            projection={"role": 1, "disabled": 1},
        )
        if before is None:
            raise UserNotFound(f"no user {username!r}")
        self._roles.pop(username, None)
        if disabled and before["role"] == "admin" and not before.get("disabled"):
            await self._keep_an_admin(
                lambda: self._users.update_one(
                    {"username": username}, {"$set": {"disabled": False}}
                )
            )

    async def delete_user(self, username: str) -> None:
        """Delete a user; their tokens stop working as with `set_disabled`."""
        deleted = await self._users.find_one_and_delete({"username": username})
        if deleted is None:
            raise UserNotFound(f"no user {username!r}")
        self._roles.pop(username, None)
        if deleted["role"] == "admin" and not deleted.get("disabled"):
            await self._keep_an_admin(lambda: self._users.insert_one(deleted))

    async def _keep_an_admin(self, undo: Callable[[], Awaitable[object]]) -> None:
        """Undo a change that left no enabled admin. Checked after the write rather than before
        it, so two admins removing each other at once cannot both pass a check that still saw
        the other: at worst both are undone."""
        if await self._users.count_documents({"role": "admin", "disabled": {"$ne": True}}):
            return
        await undo()
        raise LastAdmin("that would leave no enabled admin; add or enable another admin first")

    async def role_of(self, username: str) -> Role | None:
        """The current role of an enabled user: a token outlives neither a ban nor a demotion
        (by more than ROLE_CACHE_S, the price of not reading MongoDB on every request)."""
        cached = self._roles.get(username)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        user = await self._users.find_one({"username": username}, {"role": 1, "disabled": 1})
        role = None if user is None or user.get("disabled") else user["role"]
        self._roles[username] = (role, time.monotonic() + ROLE_CACHE_S)
        return role

    async def add_api_key(self, name: str, role: Role) -> str:
        """A new key for a machine client; the plaintext is returned once and never stored."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        await self._keys.insert_one(
            {
                "key_id": key_id,
                "name": name,
                "role": role,
                "secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
                "revoked": False,
                "created_at": datetime.now(UTC),
            }
        )
        return f"{KEY_PREFIX}{key_id}_{secret}"

    async def resolve_api_key(self, key: str) -> Principal | None:
        key_id, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
        if not key.startswith(KEY_PREFIX) or not key_id or not secret:
            return None
        stored = await self._keys.find_one({"key_id": key_id})
        if stored is None or stored.get("revoked"):
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, stored["secret_sha256"]):
            return None
        return Principal(f"key:{stored['name']}", stored["role"], "api_key")

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key: refused from its next request on (keys are looked up on every request).
        The record stays, marked, for the audit trail; revoking twice is no error."""
        result = await self._keys.update_one(
            {"key_id": key_id},
            {"$set": {"revoked": True, "revoked_at": datetime.now(UTC)}},
        )
        if result.matched_count == 0:
            raise KeyNotFound(f"no API key {key_id!r}")

    async def api_keys(self) -> list[dict[str, object]]:
        """Every key without its hash: id, name, role, revoked, created_at (oldest first)."""
        cursor = self._keys.find({}, {"_id": 0, "secret_sha256": 0}).sort("created_at", 1)
        return await cursor.to_list(None)


def key_id_of(key: str) -> str:
    """The id part of `mpk_<key_id>_<secret>` (ids are hex, so the first `_` ends it)."""
    return key.removeprefix(KEY_PREFIX).partition("_")[0]
