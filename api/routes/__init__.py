"""HTTP routes, one module per area; the routers that take JSON bodies read them with `JsonRoute`."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a parsed body (keys included) is not valid Unicode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            parsed = json.loads(body, parse_constant=_no_constant)
            # Only an escape (\ud800) or bytes that are not UTF-8 can make one.
            if (b"\\u" in body or not body.isascii()) and _has_lone_surrogate(parsed):
                raise json.JSONDecodeError("a string is not valid Unicode", "", 0)
            self._json = parsed
        return self._json


class JsonRoute(APIRoute):
    """Reads a JSON body as RFC 8259 has it: `NaN`, `Infinity` and strings that are not valid
    Unicode (a lone surrogate, `"\\ud800"`) are a 422 `validation_error` (FastAPI's answer to a
    JSONDecodeError), not values that break later: a surrogate cannot be stored in MongoDB or
    sent on Kafka (a 500), a NaN compares false with everything."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


def links(field: str, **targets: tuple[str, str]) -> dict[str, Any]:
    """OpenAPI `links` of a response: each named (method, path) target takes its path parameter
    `field` from the response body's `field`, so that clients (and schemathesis's stateful phase)
    can follow what was created to what reads, changes or removes it."""
    return {
        name: {
            "operationRef": "#/paths/"
            + path.replace("~", "~0").replace("/", "~1")
            + f"/{method.lower()}",
            "parameters": {field: f"$response.body#/{field}"},
        }
        for name, (method, path) in targets.items()
    }
