"""Out-of-range and malformed input is a 4xx problem with a stable `code`, never a 500: dates
that overflow once converted to UTC, integers MongoDB cannot hold, deep rule trees, corrupt
images, unknown ids on the event stream — against the real API, MongoDB, Redis and Kafka."""

from __future__ import annotations

import asyncio
import base64

import httpx
import orjson
import pytest

from core.config import Settings
from infra import mongo
from tests.integration.api_server import ApiServer, login
from tests.integration.test_rule_limits import count_rule_documents, deep_rule, nested
from tests.integration.workers import scene_jpeg
from tests.unit.test_image_decode import RGB, encode
from tests.unit.test_image_integrity import bad_crc_png

PROBLEM_JSON = "application/problem+json"


def _problem(reply: httpx.Response, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    body = reply.json()
    assert body["code"] == code, body
    return body


def _cursor(when: str, request_id: str = "r") -> str:
    return base64.urlsafe_b64encode(orjson.dumps([when, request_id])).decode()


@pytest.mark.parametrize(
    "params",
    [
        {"since": "0001-01-01T00:00:00+01:00"},
        {"until": "9999-12-31T23:59:59-01:00"},
        {"since": "0001-01-01T00:00:00+23:59", "until": "9999-12-31T23:59:59-23:59"},
    ],
    ids=["since-before-year-1", "until-after-year-9999", "both"],
)
def test_dates_outside_the_utc_range_are_422(api: ApiServer, params: dict) -> None:
    viewer = login(api, "viewer")
    reply = httpx.get(f"{api.url}/api/v1/analyze", params=params, headers=viewer)
    body = _problem(reply, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", next(iter(params))]
    # the extremes that do convert are fine
    fine = {"since": "0001-01-01T00:00:00-01:00", "until": "9999-12-31T23:59:59+01:00"}
    assert httpx.get(f"{api.url}/api/v1/analyze", params=fine, headers=viewer).status_code == 200


def test_bad_cursors_are_refused_as_bad_cursor(api: ApiServer) -> None:
    viewer = login(api, "viewer")
    for cursor in (
        _cursor("0001-01-01T00:00:00+23:59"),
        _cursor("9999-12-31T23:59:59-23:59"),
        _cursor("not a date"),
        "%%%",
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
    ):
        reply = httpx.get(f"{api.url}/api/v1/analyze", params={"cursor": cursor}, headers=viewer)
        _problem(reply, 400, "bad_cursor")
    good = _cursor("2024-01-01T00:00:00+00:00")
    assert (
        httpx.get(f"{api.url}/api/v1/analyze", params={"cursor": good}, headers=viewer).status_code
        == 200
    )


def test_integers_beyond_64_bits_are_422(api: ApiServer) -> None:
    analyst = login(api, "analyst")
    manager = login(api, "manager")
    rule_id = httpx.post(
        f"{api.url}/api/v1/rules", json={"text": "Every mug must be on a coaster."}, headers=manager
    ).json()["rule_id"]
    for version in ("9223372036854775808", "-9223372036854775809", str(10**40)):
        read = httpx.get(
            f"{api.url}/api/v1/rules/{rule_id}", params={"version": version}, headers=analyst
        )
        _problem(read, 422, "validation_error")
        tested = httpx.post(
            f"{api.url}/api/v1/rules/{rule_id}/backtest",
            params={"version": version},
            headers=analyst,
        )
        _problem(tested, 422, "validation_error")
    largest = httpx.get(
        f"{api.url}/api/v1/rules/{rule_id}",
        params={"version": str(2**63 - 1)},
        headers=analyst,
    )
    _problem(largest, 404, "unknown_rule")
    for params in ({"min_score": "nan"}, {"min_score": "inf"}, {"limit": str(2**64)}):
        reply = httpx.get(f"{api.url}/api/v1/analyze", params=params, headers=analyst)
        _problem(reply, 422, "validation_error")


@pytest.mark.parametrize("depth", [150, 250])
def test_deep_rule_trees_are_refused_and_nothing_is_stored(
    api: ApiServer, api_deployment: Settings, depth: int
) -> None:
    manager = login(api, "manager")
    for path in ("/api/v1/rules/parse", "/api/v1/rules"):
        reply = httpx.post(f"{api.url}{path}", json={"rule": deep_rule(depth)}, headers=manager)
        body = _problem(reply, 422, "rule_too_complex")
        assert (body["limit"], body["maximum"], body["actual"]) == ("depth", 8, depth)
    # deep in a place the limits do not look at: a condition's value
    odd = deep_rule(2) | {"conditions": {"conditions": [{"fact": "x", "op": "==", "value": []}]}}
    odd["conditions"]["conditions"][0]["value"] = nested(depth)
    for path in ("/api/v1/rules/parse", "/api/v1/rules"):
        reply = httpx.post(f"{api.url}{path}", json={"rule": odd}, headers=manager)
        _problem(reply, 422, "validation_error")
    # as text, as deep as 500 characters hold: refused by the same limit
    sentence = "Every mug must be " + "not (" * 78 + "on a coaster" + ")" * 78 + "."
    reply = httpx.post(f"{api.url}/api/v1/rules", json={"text": sentence}, headers=manager)
    body = _problem(reply, 422, "rule_too_complex")
    assert (body["limit"], body["actual"]) == ("depth", 78)
    # bare parentheses group nothing: the rule stays flat
    sentence = "Every mug must be " + "(" * 234 + "on a coaster" + ")" * 234 + "."
    reply = httpx.post(f"{api.url}/api/v1/rules/parse", json={"text": sentence}, headers=manager)
    assert reply.status_code == 200, reply.text
    assert reply.json()["rule"]["conditions"]["conditions"][0]["fact"] == "on_coaster"
    assert count_rule_documents(api_deployment) == 0


def test_json_deeper_than_the_parser_goes_is_a_4xx(api: ApiServer) -> None:
    manager = login(api, "manager")
    for depth in (1_000, 5_000, 50_000):
        body = '{"rule": {"conditions": ' + '{"conditions": [' * depth + "]}" * depth + "}}"
        for path in ("/api/v1/rules/parse", "/api/v1/rules"):
            reply = httpx.post(
                f"{api.url}{path}",
                content=body,
                headers=manager | {"content-type": "application/json"},
            )
            _problem(reply, 400, "bad_request")


def _upload(api: ApiServer, headers: dict, name: str, data: bytes, kind: str) -> httpx.Response:
    return httpx.post(
        f"{api.url}/api/v1/analyze", files={"image": (name, data, kind)}, headers=headers
    )


def test_corrupt_images_are_refused_with_fixed_wording(api: ApiServer) -> None:
    analyst = login(api, "analyst")
    jpeg = scene_jpeg(1)
    cases = {
        "crc.png": (bad_crc_png(), "image/png", "decode_error"),
        "no-iend.png": (encode(RGB, "PNG")[:-12], "image/png", "truncated_image"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "image/jpeg", "truncated_image"),
        "header.jpg": (jpeg[:20], "image/jpeg", "truncated_image"),
        "garbage.jpg": (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "image/jpeg", "decode_error"),
    }
    for name, (data, kind, code) in cases.items():
        body = _problem(_upload(api, analyst, name, data, kind), 422, code)
        assert "Error" not in body["detail"], body["detail"]  # no exception text
        assert body["detail"].startswith(f"{name}: the {'PNG' if 'png' in kind else 'JPEG'} ")
    batch = httpx.post(
        f"{api.url}/api/v1/analyze/batch",
        files=[("images", ("crc.png", bad_crc_png(), "image/png"))],
        headers=analyst,
    )
    assert batch.status_code == 202, batch.text
    assert batch.json()["items"][0]["error"]["code"] == "decode_error"
    assert _upload(api, analyst, "fine.png", encode(RGB, "PNG"), "image/png").status_code == 202


def test_events_of_an_unknown_request_are_404_at_once(api: ApiServer) -> None:
    viewer = login(api, "viewer")
    reply = httpx.get(
        f"{api.url}/api/v1/analyze/r-unknown/events", params={"timeout": 300}, headers=viewer
    )
    assert reply.elapsed.total_seconds() < 5
    _problem(reply, 404, "unknown_request")
    analyst = login(api, "analyst")
    accepted = _upload(api, analyst, "s.jpg", scene_jpeg(2), "image/jpeg")
    assert accepted.status_code == 202
    request_id = accepted.json()["request_id"]
    # no worker runs: a pending request is waited for, then times out
    pending = httpx.get(
        f"{api.url}/api/v1/analyze/{request_id}/events", params={"timeout": 1}, headers=viewer
    )
    assert pending.status_code == 200
    assert "event: pending" in pending.text
    assert "event: timeout" in pending.text


async def _disable(settings: Settings, username: str) -> None:
    client = mongo.create_client(settings)
    try:
        await mongo.database(client, settings)[mongo.USERS].update_one(
            {"username": username}, {"$set": {"disabled": True}}
        )
    finally:
        client.close()


def test_every_problem_carries_a_code(api: ApiServer, api_deployment: Settings) -> None:
    """Problems raised by Starlette and FastAPI themselves included (a default code per status)."""
    viewer = login(api, "viewer")
    analyst = login(api, "analyst")
    as_json = {"content-type": "application/json"}
    deep = '{"text": ' + "[" * 5_000 + "]" * 5_000 + "}"
    samples = {
        "no_credentials": ("GET", "/api/v1/rules", {}, {}),
        "bad_token": ("GET", "/api/v1/rules", {"Authorization": "Bearer x.y.z"}, {}),
        "forbidden": ("GET", "/api/v1/rules", viewer, {}),
        "not_found": ("GET", "/api/v1/nothing-here", viewer, {}),
        "method_not_allowed": ("PATCH", "/api/v1/rules", analyst, {}),
        "validation_error": ("GET", "/api/v1/analyze", viewer, {"params": {"limit": "many"}}),
        "bad_request": ("POST", "/api/v1/rules/parse", analyst | as_json, {"content": deep}),
        "unknown_request": ("GET", "/api/v1/analyze/r-unknown", viewer, {}),
        "unknown_rule": ("GET", "/api/v1/rules/rule-unknown", analyst, {}),
    }
    for code, (method, path, headers, extra) in samples.items():
        reply = httpx.request(method, f"{api.url}{path}", headers=headers, **extra)
        assert 400 <= reply.status_code < 500, (code, reply.status_code)
        assert reply.headers["content-type"] == PROBLEM_JSON, code
        assert reply.json().get("code") == code, reply.json()
        assert reply.json()["type"].endswith(f"/{code}"), code
    manager = login(api, "manager")  # not used before: no role cached for it yet
    asyncio.run(_disable(api_deployment, "manager"))
    disabled = httpx.get(f"{api.url}/api/v1/dashboard/summary", headers=manager)
    _problem(disabled, 401, "account_disabled")
    assert disabled.headers["www-authenticate"] == "Bearer"
