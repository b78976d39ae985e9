"""schemathesis generates requests from /api/openapi.json against the real API: whatever the
input, the answer is never a 5xx, and every error is problem+json."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from infra.provision import provision
from tests.conftest import settings_for
from tests.integration.api_server import ApiServer, api_settings, login, start_api


@pytest.fixture(scope="module")
def schema_target(kafka_broker, mongo_server, redis_server, s3_server) -> Iterator[tuple]:
    """One API for every generated case."""
    deployment = settings_for("schemathesis", kafka_broker, mongo_server, redis_server, s3_server)
    asyncio.run(provision(deployment))
    server = start_api(
        api_settings(deployment, rate_limit="100000/minute", rate_limit_ip="100000/minute")
    )
    try:
        yield server, login(server, "admin")
    finally:
        server.stop()


def test_no_generated_request_gets_a_server_error(schema_target: tuple[ApiServer, dict]) -> None:
    server, admin = schema_target
    schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case) -> None:
            if case.path.endswith("/events"):  # waits for a result that never comes
                case.query = {**(case.query or {}), "timeout": 1}
            if isinstance((case.query or {}).get("wait"), int):
                case.query["wait"] = min(case.query["wait"], 200)
            response = case.call(base_url=server.url, headers=admin, timeout=30)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.text[:300]}"
            if response.status_code >= 400:
                assert response.headers["content-type"] == ["application/problem+json"], where

        check()
