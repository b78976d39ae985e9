"""Who may call what: every role against every route, token forgeries, API keys, rate limits,
the audit log and encryption at rest — against the real API, MongoDB and Redis."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest

from api.main import create_app
from core.access import ROLES
from core.config import Settings
from infra import mongo
from infra.mongo import ACTIVITY_LOGS, USERS
from tests.integration.api_server import PASSWORD, ApiServer, api_settings, login, start_api
from tests.integration.workers import scene_jpeg

# (method, path, roles allowed); None = no authentication needed. `{rule}` is a stored rule;
# `{username}` and `{key_id}` name no account, so an allowed role gets 404, not a changed account.
ROUTES: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("GET", "/health", None),
    ("GET", "/ready", None),
    ("GET", "/metrics", None),
    ("GET", "/api/v1/about", None),
    ("GET", "/api/v1/about/source", None),
    ("POST", "/api/v1/auth/token", None),
    ("POST", "/api/v1/users", ("admin",)),
    ("POST", "/api/v1/api-keys", ("admin",)),
    ("GET", "/api/v1/api-keys", ("admin",)),
    ("DELETE", "/api/v1/api-keys/{key_id}", ("admin",)),
    ("POST", "/api/v1/users/{username}/disable", ("admin",)),
    ("POST", "/api/v1/users/{username}/enable", ("admin",)),
    ("DELETE", "/api/v1/users/{username}", ("admin",)),
    ("POST", "/api/v1/analyze", ("analyst", "manager", "admin")),
    ("POST", "/api/v1/analyze/batch", ("analyst", "manager", "admin")),
    ("GET", "/api/v1/analyze", ROLES),
    ("GET", "/api/v1/analyze/{request_id}", ROLES),
    ("GET", "/api/v1/analyze/{request_id}/image", ROLES),
    ("GET", "/api/v1/analyze/{request_id}/events", ROLES),
    ("POST", "/api/v1/rules/parse", ("analyst", "manager", "admin")),
    ("GET", "/api/v1/rules", ("analyst", "manager", "admin")),
    ("POST", "/api/v1/rules", ("manager", "admin")),
    ("GET", "/api/v1/rules/{rule_id}", ("analyst", "manager", "admin")),
    ("GET", "/api/v1/rules/{rule_id}/versions", ("analyst", "manager", "admin")),
    ("PUT", "/api/v1/rules/{rule_id}", ("manager", "admin")),
    ("DELETE", "/api/v1/rules/{rule_id}", ("manager", "admin")),
    ("POST", "/api/v1/rules/{rule_id}/backtest", ("analyst", "manager", "admin")),
    ("GET", "/api/v1/sources", ROLES),
    ("PUT", "/api/v1/sources/{source_id}", ("manager", "admin")),
    ("GET", "/api/v1/sources/{source_id}", ROLES),
    ("GET", "/api/v1/sources/{source_id}/versions", ROLES),
    ("GET", "/api/v1/sources/{source_id}/state", ROLES),
    ("DELETE", "/api/v1/sources/{source_id}", ("manager", "admin")),
    ("GET", "/api/v1/streams", ROLES),
    ("PUT", "/api/v1/sources/{source_id}/stream", ("manager", "admin")),
    ("GET", "/api/v1/sources/{source_id}/stream", ROLES),
    ("DELETE", "/api/v1/sources/{source_id}/stream", ("manager", "admin")),
    ("GET", "/api/v1/webhooks", ("manager", "admin")),
    ("PUT", "/api/v1/webhooks/{name}", ("manager", "admin")),
    ("GET", "/api/v1/webhooks/{name}", ("manager", "admin")),
    ("DELETE", "/api/v1/webhooks/{name}", ("manager", "admin")),
    ("GET", "/api/v1/webhook-deliveries", ("manager", "admin")),
    ("GET", "/api/v1/dashboard/summary", ROLES),
    ("GET", "/api/v1/servers", ("manager", "admin")),
    ("POST", "/api/v1/servers/{worker_id}/commands", ("manager", "admin")),
    ("POST", "/api/v1/ws-ticket", ROLES),
]
RULE_TEXT = {"text": "Every mug must be on a coaster."}


def _request_kwargs(method: str, path: str) -> dict:
    """A well-formed request for the route, so an allowed role gets past validation."""
    if path.startswith("/api/v1/analyze") and method == "POST":
        name = "images" if path.endswith("batch") else "image"
        return {"files": {name: ("scene.jpg", scene_jpeg(3), "image/jpeg")}}
    if path == "/api/v1/auth/token":
        return {"data": {"username": "viewer", "password": PASSWORD}}
    if path == "/api/v1/users":
        return {
            "json": {"username": f"u{time.monotonic_ns()}", "password": PASSWORD, "role": "viewer"}
        }
    if path == "/api/v1/api-keys":
        return {"json": {"name": "robot", "role": "viewer"}}
    if path.endswith("/commands"):
        return {"json": {"action": "pause"}}
    if path.endswith("/events"):
        return {"params": {"timeout": 1}}
    if path.endswith("/stream") and method == "PUT":
        # A documentation address (RFC 5737): stored, never read (no streams service runs).
        return {"json": {"url": "rtsp://192.0.2.7/stream1"}}
    if path.startswith("/api/v1/sources/") and method == "PUT":
        return {"json": {"name": "a camera"}}
    if path.startswith("/api/v1/webhooks/") and method == "PUT":
        # A public address literal: accepted without a DNS lookup, and never contacted here.
        return {"json": {"url": "https://93.184.215.14/mugpos"}}
    if path in ("/api/v1/rules", "/api/v1/rules/parse") or method == "PUT":
        return {"json": RULE_TEXT}
    return {}


def test_every_route_is_in_the_matrix() -> None:
    """A new route must be added to ROUTES, so its access rule is tested."""
    spec = create_app(Settings(_env_file=None)).openapi()
    served = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert served == {(method, path) for method, path, _ in ROUTES}


def test_every_role_against_every_route(api: ApiServer) -> None:
    tokens = {role: login(api, role) for role in ROLES}
    rule_id = httpx.post(f"{api.url}/api/v1/rules", json=RULE_TEXT, headers=tokens["admin"]).json()[
        "rule_id"
    ]
    failures = []
    for method, template, allowed in ROUTES:
        path = template.format(
            request_id="r-unknown",
            rule_id=rule_id,
            source_id="security-cam",
            name="security-hook",
            worker_id="nobody",
            username="nobody",
            key_id="0",
        )
        for role in ROLES if allowed is not None else ("anonymous",):
            reply = httpx.request(
                method,
                api.url + path,
                headers=tokens.get(role, {}),
                timeout=30,
                **_request_kwargs(method, template),
            )
            denied = reply.status_code in (401, 403)
            if reply.status_code >= 500 or denied == (allowed is None or role in allowed):
                failures.append(f"{role} {method} {path}: {reply.status_code} {reply.text[:120]}")
        if allowed is not None:
            anonymous = httpx.request(method, api.url + path, **_request_kwargs(method, template))
            if anonymous.status_code != 401:
                failures.append(f"anonymous {method} {path}: {anonymous.status_code}")
            assert anonymous.headers["content-type"] == "application/problem+json"
    assert not failures, "\n".join(failures)


def _claims(settings: Settings, **changes: object) -> dict:
    now = int(time.time())
    return {
        "sub": "admin",
        "role": "admin",
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + 60,
    } | changes


def test_forged_expired_and_unsigned_tokens_are_rejected(api: ApiServer) -> None:
    secret = api.settings.jwt_secret.get_secret_value()
    url = f"{api.url}/api/v1/dashboard/summary"
    good = jwt.encode(_claims(api.settings), secret, algorithm="HS256")
    assert httpx.get(url, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    bad = {
        "expired": jwt.encode(_claims(api.settings, iat=0, exp=100), secret, algorithm="HS256"),
        "wrong key": jwt.encode(_claims(api.settings), "x" * 40, algorithm="HS256"),
        "alg none": jwt.encode(_claims(api.settings), None, algorithm="none"),
        "other hmac alg": jwt.encode(_claims(api.settings), secret, algorithm="HS512"),
        "wrong issuer": jwt.encode(_claims(api.settings, iss="evil"), secret, algorithm="HS256"),
        "no exp": jwt.encode(
            {"sub": "admin", "role": "admin", "iss": api.settings.jwt_issuer, "iat": 1},
            secret,
            algorithm="HS256",
        ),
        "unknown user": jwt.encode(_claims(api.settings, sub="mallory"), secret, algorithm="HS256"),
        "garbage": "not.a.token",
    }
    for name, token in bad.items():
        reply = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401, name
        assert reply.headers["www-authenticate"] == "Bearer", name


def test_roles_come_from_the_user_record_not_the_token(api: ApiServer) -> None:
    """A viewer's token edited to say admin fails its signature; a genuine token of a viewer
    keeps viewer rights even when the claim is re-signed by someone holding the key."""
    secret = api.settings.jwt_secret.get_secret_value()
    forged = jwt.encode(_claims(api.settings, sub="viewer"), secret, algorithm="HS256")
    reply = httpx.post(
        f"{api.url}/api/v1/rules", json=RULE_TEXT, headers={"Authorization": f"Bearer {forged}"}
    )
    assert reply.status_code == 403


def test_login_failures_api_keys_audit_and_encrypted_email(api: ApiServer) -> None:
    wrong = httpx.post(
        f"{api.url}/api/v1/auth/token", data={"username": "admin", "password": "nope" * 4}
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "bad_credentials"
    admin = login(api, "admin")
    created = httpx.post(
        f"{api.url}/api/v1/api-keys", json={"name": "camera-7", "role": "analyst"}, headers=admin
    )
    assert created.status_code == 201
    key = {"X-API-Key": created.json()["api_key"]}
    assert httpx.get(f"{api.url}/api/v1/rules", headers=key).status_code == 200
    assert httpx.post(f"{api.url}/api/v1/rules", json=RULE_TEXT, headers=key).status_code == 403
    tampered = {"X-API-Key": created.json()["api_key"][:-2] + "xx"}
    assert httpx.get(f"{api.url}/api/v1/rules", headers=tampered).status_code == 401

    async def stored() -> tuple[list[dict], dict, dict]:
        client = mongo.create_client(api.settings)
        db = mongo.database(client, api.settings)
        try:
            logs = await db[ACTIVITY_LOGS].find({}).to_list(None)
            user = await db[USERS].find_one({"username": "viewer"})
            key_doc = await db["api_keys"].find_one({"name": "camera-7"})
            return logs, user, key_doc
        finally:
            client.close()

    logs, user, key_doc = asyncio.run(stored())
    actions = {(entry["user_id"], entry["action"], entry["outcome"]) for entry in logs}
    assert ("admin", "auth.login", "denied") in actions
    assert ("admin", "auth.login", "ok") in actions
    assert ("admin", "api_keys.add", "ok") in actions
    assert "viewer@example.com" not in str(user)  # encrypted at rest
    assert user["email_encrypted"]
    assert user["password_hash"].startswith("$argon2id$")
    assert created.json()["api_key"].split("_")[-1] not in str(key_doc)  # only a hash is kept


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "in-process"])
def test_rate_limit_answers_429_with_retry_after(deployment: Settings, shared: bool) -> None:
    settings = api_settings(
        deployment, rate_limit="5/minute", **({} if shared else {"redis_url": None})
    )
    server = start_api(settings)
    try:
        headers = login(server, "viewer")
        codes = [
            httpx.get(f"{server.url}/api/v1/dashboard/summary", headers=headers) for _ in range(6)
        ]
        assert [r.status_code for r in codes[:5]] == [200] * 5
        assert codes[5].status_code == 429
        assert codes[5].headers["content-type"] == "application/problem+json"
        assert 1 <= int(codes[5].headers["retry-after"]) <= 61
    finally:
        server.stop()
