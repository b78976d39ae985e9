"""The real API served by uvicorn on a loopback port, in a thread of the test process, with one
user per role."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import httpx
import uvicorn
from cryptography.fernet import Fernet

from api.main import create_app
from core.access import ROLES
from core.config import Settings
from infra import mongo
from infra.launchers import free_port
from infra.users_store import UsersRepository

PASSWORD = "correct horse battery staple"


def api_settings(settings: Settings, **overrides: object) -> Settings:
    """`settings` plus the API's secrets, validated like any configuration."""
    fields = settings.model_dump() | {
        "jwt_secret": secrets.token_urlsafe(32),
        "encryption_key": Fernet.generate_key().decode(),
        **overrides,
    }
    return Settings(_env_file=None, **fields)


async def add_role_users(settings: Settings) -> None:
    """Users named after their roles: viewer, analyst, manager, admin."""
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        users = UsersRepository(db, key)
        for role in ROLES:
            await users.add_user(role, PASSWORD, role, email=f"{role}@example.com")
    finally:
        client.close()


class ApiServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,  # as `mugpos api`: api.client_ip reads X-Forwarded-For
            ws="websockets-sansio",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="api")

    def start(self, timeout_s: float = 30) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server exited during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not start within {timeout_s} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)


def start_api(settings: Settings) -> ApiServer:
    asyncio.run(add_role_users(settings))
    return ApiServer(settings).start()


def login(server: ApiServer, username: str, password: str = PASSWORD) -> dict[str, str]:
    """Authorization headers for a user of the running API."""
    reply = httpx.post(
        f"{server.url}/api/v1/auth/token", data={"username": username, "password": password}
    )
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}
