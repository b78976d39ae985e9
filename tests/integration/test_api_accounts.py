"""Account protection against the real API, MongoDB and Redis: login throttling per (account, IP),
which address a request counts as, disabling and deleting users, revoking keys (API and CLI),
and what /ready and /metrics show to whom."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from control.cli import app
from core.config import Settings, settings_env
from infra import mongo
from infra.launchers import free_port
from infra.login_throttle import LoginPolicy, LoginThrottle
from infra.mongo import ACTIVITY_LOGS, API_KEYS
from infra.redis_client import create_client
from infra.users_store import ROLE_CACHE_S
from tests.integration.api_server import (
    PASSWORD,
    ApiServer,
    add_role_users,
    api_settings,
    login,
    start_api,
)

WRONG = "not the password at all"
METRICS_TOKEN = "m" * 24


def _login(server: ApiServer, user: str, password: str, ip: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return httpx.post(
        f"{server.url}/api/v1/auth/token",
        data={"username": user, "password": password},
        headers=headers,
    )


def _activity(settings: Settings, **query: object) -> list[dict]:
    async def read() -> list[dict]:
        client = mongo.create_client(settings)
        try:
            cursor = mongo.database(client, settings)[ACTIVITY_LOGS].find(query).sort("timestamp")
            return await cursor.to_list(None)
        finally:
            client.close()

    return asyncio.run(read())


@pytest.fixture
def throttled(deployment: Settings, request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    """The API behind a "proxy" at 127.0.0.1, three free failures, delays of 2, 4, 8 s."""
    shared = getattr(request, "param", True)
    settings = api_settings(
        deployment,
        trusted_proxies="127.0.0.1",
        login_free_failures=3,
        login_delay_base_s=2.0,
        login_delay_max_s=8.0,
        **({} if shared else {"redis_url": None}),
    )
    server = start_api(settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("throttled", [True, False], ids=["redis", "in-process"], indirect=True)
def test_login_throttle_slows_guessing_per_account_and_address(throttled: ApiServer) -> None:
    attacker, owner = "198.51.100.1", "203.0.113.2"
    codes = [_login(throttled, "admin", WRONG, attacker).status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    refused = _login(throttled, "admin", PASSWORD, attacker)  # even the right password waits
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "login_throttled"
    assert refused.headers["retry-after"] == "2"
    assert "access_token" not in refused.text
    # Nobody is locked out from elsewhere, and other accounts from that address are untouched.
    assert _login(throttled, "admin", PASSWORD, owner).status_code == 200
    assert _login(throttled, "viewer", PASSWORD, attacker).status_code == 200

    time.sleep(2.1)
    assert _login(throttled, "admin", WRONG, attacker).status_code == 401  # 4th failure: 4 s
    again = _login(throttled, "admin", PASSWORD, attacker)
    assert again.status_code == 429
    assert again.headers["retry-after"] == "4"
    time.sleep(4.1)
    assert _login(throttled, "admin", PASSWORD, attacker).status_code == 200  # resets the count
    assert [_login(throttled, "admin", WRONG, attacker).status_code for _ in range(3)] == [401] * 3

    starts = _activity(throttled.settings, action="auth.throttle")
    assert [(e["user_id"], e["ip"], e["detail"]["delay_s"]) for e in starts] == [
        ("admin", attacker, 2.0),
        ("admin", attacker, 4.0),
        ("admin", attacker, 2.0),
    ]
    assert all(e["detail"]["failures"] in (3, 4) for e in starts)


def test_parallel_guesses_get_only_the_free_failures(throttled: ApiServer) -> None:
    """Each attempt is counted before its password is checked: a burst cannot slip past."""

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=throttled.url, timeout=30) as client:
            replies = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/auth/token",
                        data={"username": "manager", "password": f"{WRONG}{i}"},
                        headers={"X-Forwarded-For": "198.51.100.9"},
                    )
                    for i in range(20)
                )
            )
        return sorted(reply.status_code for reply in replies)

    assert asyncio.run(burst()) == [401] * 3 + [429] * 17


def test_the_throttle_is_shared_and_survives_a_redis_outage(redis_server, unique_name) -> None:
    """Two API processes see one state through Redis; without Redis each still throttles."""
    policy = LoginPolicy(free_failures=2, base_ms=60_000, max_ms=60_000)
    settings = Settings(_env_file=None, redis_url=redis_server.url)
    dead = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{free_port()}")

    async def run() -> None:
        first, second, down = (create_client(s) for s in (settings, settings, dead))
        try:
            one = LoginThrottle(first, unique_name, policy)
            two = LoginThrottle(second, unique_name, policy)
            assert (await one.attempt("ann", "192.0.2.1")).delay_s == 0
            assert (await two.attempt("ann", "192.0.2.1")).delay_s == 60
            refused = await one.attempt("ann", "192.0.2.1")
            assert refused.refused
            assert 58 <= refused.retry_after <= 60
            assert not (await one.attempt("ann", "192.0.2.2")).refused
            await two.succeeded("ann", "192.0.2.1")
            assert not (await one.attempt("ann", "192.0.2.1")).refused

            offline = LoginThrottle(down, unique_name, policy)
            assert [(await offline.attempt("bob", "192.0.2.1")).refused for _ in range(3)] == [
                False,
                False,
                True,
            ]
        finally:
            for client in (first, second, down):
                await client.aclose()

    asyncio.run(run())


def test_forwarded_for_counts_only_from_trusted_proxies(deployment: Settings) -> None:
    """A client naming a new address in each request is still one address to the rate limit."""
    server = start_api(api_settings(deployment, rate_limit_ip="3/minute"))
    try:
        codes = [_login(server, "viewer", PASSWORD, f"6.6.6.{i}").status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
        logins = _activity(server.settings, action="auth.login")
        assert {e["ip"] for e in logins} == {"127.0.0.1"}
    finally:
        server.stop()


def test_a_trusted_proxy_names_the_client_everywhere(throttled: ApiServer) -> None:
    assert _login(throttled, "viewer", PASSWORD, "6.6.6.6, 198.51.100.7").status_code == 200
    [entry] = _activity(throttled.settings, action="auth.login")
    assert entry["ip"] == "198.51.100.7"


def test_disable_enable_delete_users_and_revoke_keys(api: ApiServer) -> None:
    admin = login(api, "admin")
    url = f"{api.url}/api/v1"
    created = httpx.post(
        f"{url}/users",
        json={"username": "temp", "password": PASSWORD, "role": "viewer"},
        headers=admin,
    )
    assert created.status_code == 201
    temp = login(api, "temp")
    summary = f"{url}/dashboard/summary"
    assert httpx.get(summary, headers=temp).status_code == 200

    disabled = httpx.post(f"{url}/users/temp/disable", headers=admin)
    assert disabled.status_code == 200
    assert disabled.json() == {"username": "temp", "disabled": True}
    assert httpx.get(summary, headers=temp).status_code == 401  # this process forgets at once
    assert _login(api, "temp", PASSWORD).status_code == 401
    assert httpx.post(f"{url}/users/temp/enable", headers=admin).status_code == 200
    assert httpx.get(summary, headers=temp).status_code == 200
    assert httpx.delete(f"{url}/users/temp", headers=admin).status_code == 204
    assert httpx.get(summary, headers=temp).status_code == 401
    gone = httpx.delete(f"{url}/users/temp", headers=admin)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["code"] == "user_not_found"
    assert httpx.post(f"{url}/users/bad%20name!/disable", headers=admin).status_code == 422

    key = httpx.post(f"{url}/api-keys", json={"name": "cam", "role": "analyst"}, headers=admin)
    key_id, secret = key.json()["key_id"], {"X-API-Key": key.json()["api_key"]}
    assert key.json()["api_key"].startswith(f"mpk_{key_id}_")
    assert httpx.get(f"{url}/rules", headers=secret).status_code == 200
    [listed] = httpx.get(f"{url}/api-keys", headers=admin).json()
    assert listed["key_id"] == key_id
    assert listed["revoked"] is False
    assert "secret_sha256" not in listed
    assert httpx.delete(f"{url}/api-keys/{key_id}", headers=admin).status_code == 204
    assert httpx.get(f"{url}/rules", headers=secret).status_code == 401
    assert httpx.get(f"{url}/api-keys", headers=admin).json()[0]["revoked"] is True
    unknown = httpx.delete(f"{url}/api-keys/abcdef", headers=admin)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "api_key_not_found")

    audited = [(e["user_id"], e["action"], e["resource"]) for e in _activity(api.settings)]
    for action, resource in [
        ("users.disable", "temp"),
        ("users.enable", "temp"),
        ("users.delete", "temp"),
        ("api_keys.revoke", key_id),
    ]:
        assert ("admin", action, resource) in audited


def test_the_last_enabled_admin_stays(api: ApiServer) -> None:
    admin = login(api, "admin")
    url = f"{api.url}/api/v1/users"
    for method, path in (("POST", "/admin/disable"), ("DELETE", "/admin")):
        refused = httpx.request(method, url + path, headers=admin)
        assert refused.status_code == 409
        assert refused.json()["code"] == "last_admin"
    assert httpx.get(f"{api.url}/api/v1/api-keys", headers=admin).status_code == 200
    assert _login(api, "admin", PASSWORD).status_code == 200

    second = {"username": "admin2", "password": PASSWORD, "role": "admin"}
    assert httpx.post(url, json=second, headers=admin).status_code == 201
    admin2 = login(api, "admin2")
    assert httpx.post(f"{url}/admin/disable", headers=admin2).status_code == 200
    refused = httpx.delete(f"{url}/admin2", headers=admin2)  # now the last one
    assert (refused.status_code, refused.json()["code"]) == (409, "last_admin")
    assert httpx.get(f"{api.url}/api/v1/api-keys", headers=admin2).status_code == 200


def test_a_disabled_users_token_stops_in_every_api_process(api: ApiServer) -> None:
    """Another process forgets its cached role within ROLE_CACHE_S."""
    other = ApiServer(api.settings).start()
    try:
        viewer = login(api, "viewer")
        summary = f"{other.url}/api/v1/dashboard/summary"
        assert httpx.get(summary, headers=viewer).status_code == 200  # cached there now
        disabled = httpx.post(f"{api.url}/api/v1/users/viewer/disable", headers=login(api, "admin"))
        assert disabled.status_code == 200
        started = time.monotonic()
        while httpx.get(summary, headers=viewer).status_code == 200:
            assert time.monotonic() - started < ROLE_CACHE_S + 1
            time.sleep(0.2)
        assert httpx.get(summary, headers=viewer).status_code == 401
    finally:
        other.stop()


def test_ready_and_metrics_show_internals_only_to_those_allowed(deployment: Settings) -> None:
    server = start_api(api_settings(deployment, metrics_token=METRICS_TOKEN))
    try:
        anonymous = httpx.get(f"{server.url}/ready", timeout=30)
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "ready"}
        viewer = httpx.get(f"{server.url}/ready", headers=login(server, "viewer"), timeout=30)
        assert viewer.json() == {"status": "ready"}
        for operator in ("manager", "admin"):
            full = httpx.get(f"{server.url}/ready", headers=login(server, operator), timeout=30)
            assert {c["name"] for c in full.json()["checks"]} >= {"kafka", "mongodb"}
        forged = httpx.get(f"{server.url}/ready", headers={"Authorization": "Bearer x.y.z"})
        assert forged.status_code == 401
        assert forged.headers["content-type"] == "application/problem+json"

        metrics = f"{server.url}/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong"}, login(server, "admin")):
            refused = httpx.get(metrics, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "metrics_token_required"
        scraped = httpx.get(metrics, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scraped.status_code == 200
        assert "mugpos_http_requests_total" in scraped.text
    finally:
        server.stop()


def test_cli_disables_deletes_and_revokes_with_an_audit_trail(
    deployment: Settings, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = api_settings(deployment)
    asyncio.run(add_role_users(settings))
    env = settings_env(settings)
    runner = CliRunner()

    def mugpos(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["users", *args], env=env)
        return result.exit_code, result.output

    assert mugpos("disable", "viewer") == (0, "disabled viewer\n")
    assert mugpos("enable", "viewer") == (0, "enabled viewer\n")
    code, output = mugpos("disable", "admin")
    assert code == 2
    assert "no enabled admin" in output
    assert mugpos("delete", "viewer", "--yes") == (0, "deleted viewer\n")
    code, output = mugpos("delete", "viewer", "--yes")
    assert code == 2
    assert "no user 'viewer'" in output
    code, key = mugpos("key", "robot", "--role", "analyst")
    assert code == 0
    key_id = key.strip().removeprefix("mpk_").partition("_")[0]
    code, listed = mugpos("keys")
    assert code == 0
    assert key_id in listed
    assert key.strip() not in listed
    assert mugpos("revoke-key", key_id) == (0, f"revoked {key_id}\n")
    code, output = mugpos("revoke-key", "abc")
    assert code == 2
    assert "no API key" in output

    async def revoked() -> bool:
        client = mongo.create_client(settings)
        try:
            doc = await mongo.database(client, settings)[API_KEYS].find_one({"key_id": key_id})
            return doc["revoked"]
        finally:
            client.close()

    assert asyncio.run(revoked())
    actions = [(e["action"], e["resource"]) for e in _activity(settings)]
    assert actions == [
        ("users.disable", "viewer"),
        ("users.enable", "viewer"),
        ("users.delete", "viewer"),
        ("api_keys.revoke", key_id),
    ]
    assert all(e["user_id"].startswith("cli:") for e in _activity(settings))
