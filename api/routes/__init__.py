"""HTTP routes, one module per area."""

from __future__ import annotations

from typing import Any


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
