"""API users (argon2id password hashes, e-mail encrypted with Fernet) and hashed API keys.

An API key is `mpk_<key_id>_<secret>`; only sha256(secret) is stored. The secret has 256 bits of
entropy, so a fast hash is enough there, unlike passwords which get a slow KDF.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
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
            "password_hash": _HASHER.hash(password),
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
            _HASHER.verify(user["password_hash"] if user else _DUMMY_HASH, password)
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
