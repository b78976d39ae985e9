"""Rules cannot take the API down: a rule too complex to evaluate safely is refused with a 422
naming the limit (and nothing is stored), and a bad rule document already in MongoDB is left out
of the listing instead of turning it into a 500 for everyone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx

from core.config import Settings
from infra import mongo
from tests.integration.api_server import ApiServer, login

DEPTH = 200


def nested(depth: int) -> dict:
    """A condition tree `depth` groups deep around one leaf."""
    group: dict = {"conditions": [{"fact": "on_coaster", "op": "==", "value": True}]}
    for _ in range(depth - 1):
        group = {"logic": "all", "conditions": [group]}
    return group


def deep_rule(depth: int = DEPTH) -> dict:
    return {
        "name": "deep",
        "type": "requirement",
        "scope": "mug",
        "mode": "must_hold",
        "conditions": nested(depth),
    }


async def _rules_collection(settings: Settings, work):
    client = mongo.create_client(settings)
    try:
        return await work(mongo.database(client, settings)[mongo.RULES])
    finally:
        client.close()


def count_rule_documents(settings: Settings) -> int:
    return asyncio.run(_rules_collection(settings, lambda rules: rules.count_documents({})))


def insert_rule_documents(settings: Settings, *docs: dict) -> None:
    asyncio.run(_rules_collection(settings, lambda rules: rules.insert_many(list(docs))))


def _assert_too_complex(reply: httpx.Response) -> None:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert body["code"] == "rule_too_complex"
    assert (body["limit"], body["maximum"], body["actual"]) == ("depth", 8, DEPTH)
    assert body["detail"] == f"conditions nest {DEPTH} levels deep; the limit is 8"


def test_a_200_level_rule_is_refused_everywhere_and_nothing_is_stored(
    api: ApiServer, api_deployment: Settings
) -> None:
    manager = login(api, "manager")
    created = httpx.post(f"{api.url}/api/v1/rules", json={"rule": deep_rule()}, headers=manager)
    _assert_too_complex(created)
    preview = httpx.post(
        f"{api.url}/api/v1/rules/parse", json={"rule": deep_rule()}, headers=manager
    )
    _assert_too_complex(preview)
    sentence = "Every mug must be " + "not (" * 9 + "on a coaster" + ")" * 9 + "."
    parsed = httpx.post(f"{api.url}/api/v1/rules/parse", json={"text": sentence}, headers=manager)
    assert parsed.status_code == 422, parsed.text
    assert (parsed.json()["code"], parsed.json()["limit"]) == ("rule_too_complex", "depth")

    good = httpx.post(
        f"{api.url}/api/v1/rules", json={"text": "Every mug must be on a coaster."}, headers=manager
    )
    assert good.status_code == 201
    updated = httpx.put(
        f"{api.url}/api/v1/rules/{good.json()['rule_id']}",
        json={"rule": deep_rule()},
        headers=manager,
    )
    _assert_too_complex(updated)
    # deeper than Python's JSON parser goes (~500 groups): refused before any of our code runs
    body = '{"rule": {"conditions": ' + '{"conditions": [' * 2000 + "]}" * 2000 + "}}"
    unparsable = httpx.post(
        f"{api.url}/api/v1/rules",
        content=body,
        headers=manager | {"content-type": "application/json"},
    )
    assert unparsable.status_code == 400
    assert unparsable.headers["content-type"].startswith("application/problem+json")
    assert count_rule_documents(api_deployment) == 1  # only the good rule's version 1
    listed = httpx.get(f"{api.url}/api/v1/rules", headers=manager)
    assert listed.status_code == 200
    assert [r["version"] for r in listed.json()] == [1]


def test_bad_stored_documents_do_not_break_the_listing(
    api: ApiServer, api_deployment: Settings
) -> None:
    manager = login(api, "manager")
    good = httpx.post(
        f"{api.url}/api/v1/rules", json={"text": "At most 2 mugs per table."}, headers=manager
    )
    assert good.status_code == 201
    now = datetime.now(UTC)
    insert_rule_documents(
        api_deployment,
        # written before limits existed: 200 groups deep
        {"rule_id": "rule-deep", "version": 1, "created_at": now, **deep_rule()},
        # a field of the wrong type (severity must be a known word, conditions a group)
        {
            "rule_id": "rule-garbled",
            "version": 1,
            "created_at": now,
            "name": "garbled",
            "type": "requirement",
            "scope": "mug",
            "mode": "must_hold",
            "severity": 7,
            "conditions": "on a coaster",
        },
        # readable, but refers to a fact the engine does not know
        {
            **good.json()["rule"],
            "rule_id": "rule-fact",
            "version": 1,
            "created_at": now,
            "conditions": {"conditions": [{"fact": "temperature", "op": ">", "value": 3}]},
        },
    )
    listed = httpx.get(f"{api.url}/api/v1/rules", headers=manager)
    assert listed.status_code == 200, listed.text
    assert sorted(r["rule_id"] for r in listed.json()) == sorted(
        [good.json()["rule_id"], "rule-fact"]
    )
    backtest = httpx.post(f"{api.url}/api/v1/rules/rule-fact/backtest", headers=manager)
    assert backtest.status_code == 422, backtest.text
    assert backtest.json()["code"] == "rule_invalid"

    for rule_id in ("rule-deep", "rule-garbled"):
        read = httpx.get(f"{api.url}/api/v1/rules/{rule_id}", headers=manager)
        assert read.status_code == 409, read.text
        assert read.json()["code"] == "rule_unreadable"
        assert read.json()["detail"] == (
            f"rule {rule_id} version 1 is stored in a form that cannot be read; "
            "store a new version of it to replace it"
        )
        refused = httpx.delete(f"{api.url}/api/v1/rules/{rule_id}", headers=manager)
        assert refused.status_code == 409
    # a manager replaces the unreadable rule with a new version; the listing shows it again
    fixed = httpx.put(
        f"{api.url}/api/v1/rules/rule-deep",
        json={"text": "Every mug must be on a coaster."},
        headers=manager,
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["version"] == 2
    listed = httpx.get(f"{api.url}/api/v1/rules", headers=manager)
    assert sorted(r["rule_id"] for r in listed.json()) == sorted(
        [good.json()["rule_id"], "rule-deep", "rule-fact"]
    )
