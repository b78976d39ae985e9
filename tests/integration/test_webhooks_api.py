"""`/api/v1/webhooks` and `/api/v1/webhook-deliveries`, and `mugpos webhooks`: endpoints written
by managers with a signing secret shown once, URLs into the service's own network refused unless
allowed, the delivery log filtered — against the real API and MongoDB."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from core.config import Settings
from infra import mongo
from infra.mongo import ACTIVITY_LOGS, WEBHOOK_ENDPOINTS
from infra.users_store import UsersRepository
from infra.webhooks_store import WebhookDeliveries
from tests.integration.api_server import PASSWORD, ApiServer, api_settings, login, start_api
from tests.integration.test_cli_client import Cli

# A public address literal: accepted without a DNS lookup, and never contacted by these tests.
PUBLIC_URL = "https://93.184.215.14/mugpos"


def _put(api: ApiServer, headers: dict, name: str, body: dict) -> httpx.Response:
    return httpx.put(f"{api.url}/api/v1/webhooks/{name}", json=body, headers=headers, timeout=30)


def _problem(reply: httpx.Response, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["code"] == code, problem
    assert "Traceback" not in reply.text
    return problem


@pytest.fixture
def open_api(deployment: Settings) -> Iterator[ApiServer]:
    """The API allowing webhooks into 127.0.0.0/8 (MUGPOS_WEBHOOK_ALLOW_NETWORKS)."""
    server = start_api(api_settings(deployment, webhook_allow_networks=["127.0.0.0/8"]))
    try:
        yield server
    finally:
        server.stop()


def test_endpoints_are_created_changed_rotated_and_deleted(api: ApiServer) -> None:
    manager, viewer, analyst = (login(api, role) for role in ("manager", "viewer", "analyst"))
    url = f"{api.url}/api/v1/webhooks"
    body = {"url": PUBLIC_URL, "format": "slack"}

    assert _put(api, viewer, "ops", body).status_code == 403
    assert httpx.get(url, headers=analyst).status_code == 403
    created = _put(api, manager, "ops", body)
    assert created.status_code == 201, created.text
    first = created.json()
    secret = first.pop("secret")
    assert len(secret) >= 40
    assert first | {"created_at": None, "updated_at": None} == {
        "name": "ops",
        "url": PUBLIC_URL,
        "format": "slack",
        "enabled": True,
        "created_at": None,
        "updated_at": None,
        "updated_by": "manager",
    }

    listing = httpx.get(url, headers=manager)
    assert listing.status_code == 200, listing.text
    assert [e["name"] for e in listing.json()] == ["ops"]
    one = httpx.get(f"{url}/ops", headers=manager)
    assert one.status_code == 200, one.text
    assert "secret" not in one.json()
    assert "secret" not in listing.json()[0]
    assert secret not in one.text + listing.text

    changed = _put(api, manager, "ops", {"url": PUBLIC_URL + "/v2", "enabled": False})
    assert changed.status_code == 200, changed.text
    assert "secret" not in changed.json()
    assert (changed.json()["format"], changed.json()["enabled"]) == ("json", False)
    assert changed.json()["created_at"] == first["created_at"]

    rotated = _put(api, manager, "ops", {"url": PUBLIC_URL, "rotate_secret": True})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (None, secret)
    new = _put(api, manager, "fresh", {"url": PUBLIC_URL, "rotate_secret": True})
    assert new.status_code == 201, new.text  # a rotation that creates is a creation
    assert new.json()["secret"]

    async def stored() -> tuple[dict, list[dict]]:
        client = mongo.create_client(api.settings)
        db = mongo.database(client, api.settings)
        try:
            doc = await db[WEBHOOK_ENDPOINTS].find_one({"_id": "ops"})
            logs = (
                await db[ACTIVITY_LOGS]
                .find({"action": {"$regex": "^webhooks"}})
                .sort("timestamp")
                .to_list(None)
            )
            return doc, logs
        finally:
            client.close()

    doc, logs = asyncio.run(stored())
    assert rotated.json()["secret"] not in str(doc)  # encrypted at rest
    assert [(e["user_id"], e["action"], e["resource"]) for e in logs] == [
        ("manager", "webhooks.create", "ops"),
        ("manager", "webhooks.update", "ops"),
        ("manager", "webhooks.update", "ops"),
        ("manager", "webhooks.create", "fresh"),
    ]
    assert PUBLIC_URL not in str(logs)  # a URL can be a credential (Slack's are)

    assert httpx.delete(f"{url}/ops", headers=viewer).status_code == 403
    deleted = httpx.delete(f"{url}/ops", headers=manager)
    assert (deleted.status_code, deleted.content) == (204, b"")
    _problem(httpx.get(f"{url}/ops", headers=manager), 404, "webhook_not_found")
    _problem(httpx.delete(f"{url}/ops", headers=manager), 404, "webhook_not_found")
    assert [e["name"] for e in httpx.get(url, headers=manager).json()] == ["fresh"]


def test_bad_bodies_and_names_are_refused_with_a_code(api: ApiServer) -> None:
    admin = login(api, "admin")
    cases = {
        "name pattern": ("Not_A_Name", {"url": PUBLIC_URL}),
        "no url": ("ok", {"format": "json"}),
        "unknown format": ("ok", {"url": PUBLIC_URL, "format": "xml"}),
        "enabled as a number": ("ok", {"url": PUBLIC_URL, "enabled": 1}),
        "rotate as a string": ("ok", {"url": PUBLIC_URL, "rotate_secret": "true"}),
        "extra field": ("ok", {"url": PUBLIC_URL, "secret": "mine"}),
        "url too long": ("ok", {"url": PUBLIC_URL + "/" + "a" * 2000}),
    }
    for case, (name, body) in cases.items():
        reply = _put(api, admin, name, body)
        assert reply.status_code == 422, (case, reply.text)
        assert reply.json()["code"] == "validation_error", (case, reply.text)
    assert httpx.get(f"{api.url}/api/v1/webhooks", headers=admin).json() == []


def test_targets_into_the_service_network_are_refused(api: ApiServer) -> None:
    manager = login(api, "manager")
    refused = {
        "http://127.0.0.1:9/x": "127.0.0.1 is a loopback address",
        "http://169.254.169.254/latest/meta-data": "169.254.169.254 is a link-local address",
        "http://10.1.2.3/hook": "10.1.2.3 is a private address",
        "http://[::1]/hook": "::1 is a loopback address",
        "http://localhost/x": "localhost resolves to",
        "ftp://example.org": "http:// or https://",
        "https://user:pw@93.184.215.14/x": "carries no credentials",
        "https://no-such-host.invalid/x": "resolve",
        # What the guard cannot read is refused the same way, never a 500.
        "http://[::1/x": "not a valid URL",
        "https://" + "a" * 64 + ".example/x": "not a valid URL",
        "https://93.184.215.14:99999/x": "not a valid URL",
        "https://93.184.215.14:0/x": "port 0 is no port",
    }
    for url, reason in refused.items():
        problem = _problem(
            _put(api, manager, "sneaky", {"url": url}), 422, "webhook_target_refused"
        )
        assert reason in problem["detail"], (url, problem)
    _problem(
        httpx.get(f"{api.url}/api/v1/webhooks/sneaky", headers=manager), 404, "webhook_not_found"
    )


def test_allowed_networks_may_be_reached(open_api: ApiServer) -> None:
    manager = login(open_api, "manager")
    created = _put(open_api, manager, "local", {"url": "http://127.0.0.1:9/x"})
    assert created.status_code == 201, created.text
    assert created.json()["secret"]
    # Only the networks allowed: other private ones stay refused.
    problem = _problem(
        _put(open_api, manager, "metadata", {"url": "http://169.254.169.254/latest"}),
        422,
        "webhook_target_refused",
    )
    assert "link-local" in problem["detail"]


def _alert(n: int, event: str = "raised") -> dict:
    return {
        "alert_id": f"a{n}",
        "event": event,
        "source_id": "desk-1",
        "rule_id": f"rule-{n}",
        "dedup_key": f"desk-1/rule-{n}/t{n}",
    }


async def _log_deliveries(settings: Settings) -> None:
    """Four log entries, oldest first: ops pending, ops delivered, team dead-lettered, ops
    refused (what the dispatcher writes)."""
    client = mongo.create_client(settings)
    try:
        log = WebhookDeliveries(mongo.database(client, settings))
        plan = [
            ("ops", "pending", None),
            ("ops", "delivered", 204),
            ("team", "dead_lettered", 500),
            ("ops", "refused", None),
        ]
        for n, (endpoint, status, code) in enumerate(plan):
            entry = await log.open(_alert(n, "resolved" if n == 1 else "raised"), endpoint)
            if code is not None:
                url = f"https://hooks.example.com/{endpoint}"
                await log.attempted(entry["_id"], url, code, None if code < 300 else "HTTP 500")
            if status != "pending":
                await log.finish(entry["_id"], status)  # type: ignore[arg-type]
            await asyncio.sleep(0.01)  # distinct creation times: the log is newest first
    finally:
        client.close()


def test_the_delivery_log_is_listed_newest_first_and_filtered(api: ApiServer) -> None:
    manager, viewer = login(api, "manager"), login(api, "viewer")
    url = f"{api.url}/api/v1/webhook-deliveries"
    assert httpx.get(url, headers=manager).json() == []
    asyncio.run(_log_deliveries(api.settings))

    def ids(**params: object) -> list[str]:
        reply = httpx.get(url, params=params, headers=manager)
        assert reply.status_code == 200, reply.text
        return [d["delivery_id"] for d in reply.json()]

    everything = httpx.get(url, headers=manager).json()
    assert [d["delivery_id"] for d in everything] == ["a3:ops", "a2:team", "a1:ops", "a0:ops"]
    pending, delivered = everything[3], everything[2]
    assert pending | {"created_at": None, "updated_at": None} == {
        "delivery_id": "a0:ops",
        "alert_id": "a0",
        "endpoint": "ops",
        "event": "raised",
        "source_id": "desk-1",
        "rule_id": "rule-0",
        "dedup_key": "desk-1/rule-0/t0",
        "status": "pending",
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        "url": None,
        "created_at": None,
        "updated_at": None,
        "delivered_at": None,
    }
    assert (delivered["event"], delivered["status"], delivered["attempts"]) == (
        "resolved",
        "delivered",
        1,
    )
    assert (delivered["last_status_code"], delivered["url"]) == (
        204,
        "https://hooks.example.com/ops",
    )
    assert delivered["delivered_at"] is not None
    assert ids(endpoint="ops") == ["a3:ops", "a1:ops", "a0:ops"]
    assert ids(status="dead_lettered") == ["a2:team"]
    assert ids(endpoint="ops", status="refused") == ["a3:ops"]
    assert ids(endpoint="nobody") == []
    assert ids(limit=2) == ["a3:ops", "a2:team"]

    for params in ({"limit": 0}, {"limit": 501}, {"status": "lost"}, {"endpoint": "Bad Name"}):
        _problem(httpx.get(url, params=params, headers=manager), 422, "validation_error")
    _problem(httpx.get(url, headers=viewer), 403, "forbidden")


def test_writes_without_an_encryption_key_are_unavailable(deployment: Settings) -> None:
    """Secrets are stored encrypted: without MUGPOS_ENCRYPTION_KEY an endpoint cannot be written
    (503 `secrets_unavailable`), while the rest of the API serves."""
    settings = api_settings(deployment, encryption_key=None)

    async def add_manager() -> None:
        client = mongo.create_client(settings)
        try:
            db = mongo.database(client, settings)
            await mongo.ensure_indexes(db)
            await UsersRepository(db, None).add_user("manager", PASSWORD, "manager")
        finally:
            client.close()

    asyncio.run(add_manager())
    server = ApiServer(settings).start()
    try:
        manager = login(server, "manager")
        problem = _problem(
            _put(server, manager, "ops", {"url": PUBLIC_URL}), 503, "secrets_unavailable"
        )
        assert "MUGPOS_ENCRYPTION_KEY" in problem["detail"]
        listing = httpx.get(f"{server.url}/api/v1/webhooks", headers=manager)
        assert (listing.status_code, listing.json()) == (200, [])
    finally:
        server.stop()


def test_cli_round_trip(open_api: ApiServer, tmp_path: Path) -> None:
    """`mugpos webhooks put|list|get|deliveries|delete` through the SDK, as an operator runs it."""
    cli = Cli(open_api, tmp_path / "config")
    logged_in = cli("login", "--username", "manager", MUGPOS_PASSWORD=PASSWORD)
    assert logged_in.returncode == 0, logged_in.stderr

    created = cli("webhooks", "put", "ops", "http://127.0.0.1:9/hook", "--format", "slack")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "ops: stored (slack, enabled)" in created.stdout
    assert "shown once" in created.stdout
    secret = created.stdout.strip().splitlines()[-1]
    assert len(secret) >= 40, created.stdout
    assert " " not in secret

    changed = cli("webhooks", "put", "ops", "http://127.0.0.1:9/hook", "--disabled")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "ops: stored (json, disabled)" in changed.stdout
    assert "secret" not in changed.stdout
    rotated = cli("webhooks", "put", "ops", "http://127.0.0.1:9/hook", "--rotate-secret")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert rotated.stdout.strip().splitlines()[-1] not in ("", secret)

    listed = cli("webhooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (endpoint,) = orjson.loads(listed.stdout)
    assert (endpoint["name"], endpoint["format"], endpoint["enabled"]) == ("ops", "json", True)
    table = cli("webhooks", "list", COLUMNS="200")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "http://127.0.0.1:9/hook" in table.stdout
    got = cli("webhooks", "get", "ops")
    assert orjson.loads(got.stdout)["url"] == "http://127.0.0.1:9/hook"
    assert "secret" not in got.stdout

    refused = cli("webhooks", "put", "meta", "http://169.254.169.254/latest")
    assert refused.returncode == 1
    assert "webhook_target_refused" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr

    asyncio.run(_log_deliveries(open_api.settings))
    log = cli("webhooks", "deliveries", "--endpoint", "ops", "--status", "delivered", "--json")
    assert log.returncode == 0, log.stderr
    assert [d["delivery_id"] for d in orjson.loads(log.stdout)] == ["a1:ops"]
    log_table = cli("webhooks", "deliveries", "--limit", "2", COLUMNS="200")
    assert log_table.returncode == 0, log_table.stdout + log_table.stderr
    assert "dead_lettered" in log_table.stdout
    bad_status = cli("webhooks", "deliveries", "--status", "lost")
    assert bad_status.returncode == 2

    deleted = cli("webhooks", "delete", "ops")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "ops: deleted" in deleted.stdout
    gone = cli("webhooks", "get", "ops")
    assert gone.returncode == 1
    assert "webhook_not_found" in gone.stdout
