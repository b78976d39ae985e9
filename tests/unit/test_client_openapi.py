"""The SDK (mugpos.client) checked against the API's own OpenAPI document: every operation it
calls exists with the parameters it sends, and its models have the documented fields."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from api.main import create_app
from core.config import Settings
from mugpos.client import (
    ABOUT,
    ANALYZE,
    SOURCES,
    STREAMS,
    TOKEN,
    WEBHOOK_DELIVERIES,
    WEBHOOKS,
    ResultPage,
    Submitted,
    Token,
)

# (method, path, query parameters, form or JSON body fields) of every call mugpos.client makes.
CALLS = [
    ("post", TOKEN, set(), {"username", "password"}),
    ("get", ABOUT, set(), set()),
    ("post", ANALYZE, {"wait"}, {"image", "source_id", "options"}),
    ("get", ANALYZE, {"source_id", "status", "limit", "cursor"}, set()),
    ("get", f"{ANALYZE}/{{request_id}}", set(), set()),
    ("get", f"{ANALYZE}/{{request_id}}/events", {"timeout"}, set()),
    ("get", f"{ANALYZE}/{{request_id}}/image", {"annotated"}, set()),
    ("get", SOURCES, set(), set()),
    ("get", f"{SOURCES}/{{source_id}}", {"version"}, set()),
    ("put", f"{SOURCES}/{{source_id}}", set(), set()),
    ("delete", f"{SOURCES}/{{source_id}}", set(), set()),
    ("get", f"{SOURCES}/{{source_id}}/state", set(), set()),
    ("get", STREAMS, {"state"}, set()),
    ("get", f"{SOURCES}/{{source_id}}/stream", set(), set()),
    (
        "put",
        f"{SOURCES}/{{source_id}}/stream",
        set(),
        {"url", "every_s", "on_change", "change_threshold", "rtsp_transport"},
    ),
    ("delete", f"{SOURCES}/{{source_id}}/stream", set(), set()),
    ("get", WEBHOOKS, set(), set()),
    ("get", f"{WEBHOOKS}/{{name}}", set(), set()),
    ("put", f"{WEBHOOKS}/{{name}}", set(), {"url", "format", "enabled", "rotate_secret"}),
    ("delete", f"{WEBHOOKS}/{{name}}", set(), set()),
    ("get", WEBHOOK_DELIVERIES, {"endpoint", "status", "limit"}, set()),
]
MODELS: list[tuple[type[BaseModel], str]] = [
    (Token, "Token"),
    (Submitted, "Submitted"),
    (ResultPage, "ResultPage"),
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(_env_file=None)).openapi()


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize(("method", "path", "query", "form"), CALLS)
def test_every_call_is_a_documented_operation(
    document: dict[str, Any], method: str, path: str, query: set[str], form: set[str]
) -> None:
    operation = document["paths"].get(path, {}).get(method)
    assert operation is not None, f"{method.upper()} {path} is not in the API"
    documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert query <= documented
    if form:
        content = operation["requestBody"]["content"]
        (body,) = content.values()
        assert form <= set(_resolve(document, body["schema"])["properties"])


@pytest.mark.parametrize(("model", "component"), MODELS)
def test_models_have_the_documented_fields(
    document: dict[str, Any], model: type[BaseModel], component: str
) -> None:
    schema = document["components"]["schemas"][component]
    assert set(model.model_fields) == set(schema["properties"])
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required <= set(schema.get("required", []))


def test_a_call_outside_the_api_would_be_caught(document: dict[str, Any]) -> None:
    assert document["paths"].get(f"{ANALYZE}/{{request_id}}/nothing") is None
