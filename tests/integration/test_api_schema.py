"""schemathesis (4.x) against the real API, from /api/openapi.json, with every check it has.

The run is schemathesis's own (`schemathesis run`, as in CI or by hand) with the configuration in
schemathesis.toml beside this file: all four phases (examples, coverage, fuzzing, stateful along
the document's links), at most 50 examples per operation and phase, and every built-in check
(not_a_server_error, status_code_conformance, content_type_conformance,
response_headers_conformance, response_schema_conformance, negative_data_rejection,
positive_data_acceptance, missing_required_header, unsupported_method,
allow_header_conformance, use_after_free, ensure_resource_availability, ignored_auth,
object_level_authorization) plus `problem_details` (schemathesis_hooks.py): every error is
problem+json with a `code`, and a request the document calls valid is never a
`validation_error`. A run passes with no failure and no error.

What the configuration narrows, and why:
- `GET /analyze/{id}/events` always gets `timeout=1`: no worker runs here, so the stream waits
  out its timeout (up to 300 s) on every request.
- `positive_data_acceptance` also accepts the statuses of what a schema cannot state (the bytes
  are an image, the cursor is one the API issued, the sentence is a rule) on the uploads,
  `GET /analyze` and the rule bodies; problem_details still fails a `validation_error` there.
- `use_after_free` is off under /rules/{rule_id}: DELETE disables a rule, which stays readable
  with its history by design; likewise for a deleted source's versions and tracking state.
- `PUT /sources/{source_id}` may refuse a schema-valid calibration that spans no quadrilateral
  (422 `source_invalid`).
- `PUT /webhooks/{name}` may refuse a schema-valid URL that points where webhooks may not go
  (a private or loopback address, a host that does not resolve): 422 `webhook_target_refused`.
  No generated URL points to a public address, so the hooks file sends half of the schema-valid
  PUTs with one (never contacted), and endpoints are created, read and deleted too.
- `PUT /sources/{source_id}/stream` may refuse a schema-valid URL that names no network stream
  (a path, another scheme, no host): 422 `stream_invalid`. The hooks file sends half of the
  schema-valid PUTs with a camera URL (never read: no streams service runs here).
- The deployment's longest `?wait=` is 200 ms (MUGPOS_API_MAX_WAIT_MS, stated in the document
  as the parameter's maximum), so an upload that waits costs at most that.

The fuzzer works as an admin who cannot be addressed by any request it can make (a username
outside the path parameters' pattern): it creates admins and disables or deletes other users,
and must not lock itself out. One real upload gives the result routes an id that exists.

schemathesis sends valid Unicode and no NaN; the last test sends those, and keys MongoDB cannot
store, by hand.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra import mongo
from infra.provision import provision
from infra.users_store import UsersRepository
from tests.conftest import settings_for
from tests.integration.api_server import PASSWORD, ApiServer, api_settings, login, start_api
from tests.integration.workers import scene_jpeg

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FUZZER = "schemathesis admin"  # the space keeps it out of /users/{username}
SEED = 7


async def _add_fuzzer(server: ApiServer) -> None:
    settings = server.settings
    client = mongo.create_client(settings)
    try:
        key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
        await UsersRepository(mongo.database(client, settings), key).add_user(
            FUZZER, PASSWORD, "admin"
        )
    finally:
        client.close()


@pytest.fixture(scope="module")
def schema_target(
    kafka_broker, mongo_server, redis_server, s3_server
) -> Iterator[tuple[ApiServer, dict[str, str], str]]:
    """One API for both runs, its fuzzer's credentials and the id of a real upload."""
    deployment = settings_for("schemathesis", kafka_broker, mongo_server, redis_server, s3_server)
    asyncio.run(provision(deployment))
    server = start_api(
        api_settings(
            deployment,
            rate_limit="100000/minute",
            rate_limit_ip="100000/minute",
            api_max_wait_ms=200,
        )
    )
    try:
        asyncio.run(_add_fuzzer(server))
        headers = login(server, FUZZER)
        upload = httpx.post(
            f"{server.url}/api/v1/analyze",
            files={"image": ("scene.jpg", scene_jpeg(1), "image/jpeg")},
            headers=headers,
            timeout=30,
        )
        assert upload.status_code == 202, upload.text
        yield server, headers, upload.json()["request_id"]
    finally:
        server.stop()


def _run(server: ApiServer, request_id: str, tmp_path: Path, *options: str) -> tuple[dict, str]:
    """schemathesis run with the checked-in configuration plus the real upload's id for the
    result routes that answer at once; (its JSON report, its output)."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.read_text()
        + "\n[[operations]]\n"
        + 'include-path-regex = "^/api/v1/analyze/\\\\{request_id\\\\}(/image)?$"\n'
        + f'parameters = {{ request_id = "{request_id}" }}\n'
    )
    report = tmp_path / "report.json"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/api/openapi.json",
        "--seed",
        str(SEED),
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *options,
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False
    )
    output = done.stdout + done.stderr
    assert report.exists(), output[-5000:]
    return json.loads(report.read_text()), output


def _assert_clean(report: dict, output: str) -> None:
    summary = output[output.rfind("SUMMARY") :]
    print(summary)  # operations, test cases, warnings: shown with -rP
    assert report["failures"] == [], output[-30000:]
    assert report["errors"] == [], output[-30000:]
    assert report["exit_code"] == 0, summary
    assert report["stop_reason"] == "completed", summary
    operations = report["operations"]
    assert operations["tested"] == operations["total"] >= 25, summary
    assert report["test_cases"]["generated"] >= 10 * operations["total"], summary


def test_every_check_passes_as_an_admin(schema_target, tmp_path: Path) -> None:
    server, headers, request_id = schema_target
    report, output = _run(
        server, request_id, tmp_path, "--header", f"Authorization: {headers['Authorization']}"
    )
    _assert_clean(report, output)
    phases = report["phases"]
    assert {name: phases[name]["status"] for name in phases} == dict.fromkeys(
        ("examples", "coverage", "fuzzing", "stateful"), "success"
    ), output[output.rfind("SUMMARY") :]


def test_every_check_passes_anonymously(schema_target, tmp_path: Path) -> None:
    """Every operation but /health, /ready and /metrics answers 401: fewer examples suffice."""
    server, _, request_id = schema_target
    report, output = _run(server, request_id, tmp_path, "--max-examples", "10")
    _assert_clean(report, output)


def _rule(name: str, value: str = "true", metadata: str = "{}") -> bytes:
    return (
        f'{{"rule": {{"name": "{name}", "type": "requirement", "scope": "mug", '
        f'"mode": "must_hold", "metadata": {metadata}, "conditions": {{"conditions": '
        f'[{{"fact": "edge_distance", "op": ">=", "value": {value}}}]}}}}}}'
    ).encode()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/rules", _rule("\\ud800 probe")),
        ("/api/v1/rules", _rule("? probe").replace(b"?", b"\xed\xa0\x80")),  # not UTF-8
        ("/api/v1/rules", _rule("nan probe", value="NaN")),
        ("/api/v1/rules", _rule("infinity probe", value="1e999")),
        ("/api/v1/rules", _rule("nul probe", metadata='{"a\\u0000": "b"}')),
        (
            "/api/v1/servers/all/commands?wait=false",
            b'{"action": "switch_model", "params": {"model": "mugdet:\\udc00"}}',
        ),
    ],
    ids=["lone-surrogate", "surrogate-bytes", "nan", "infinity", "nul-in-key", "command"],
)
def test_what_schemathesis_never_sends_is_refused_too(
    schema_target, path: str, body: bytes
) -> None:
    """JSON that is not valid Unicode, NaN and numbers past a double, and keys MongoDB cannot
    store: each was accepted, then a 500 (MongoDB or Kafka refused it) or a stored rule that
    judged every mug alike. Now a 422, and nothing is stored."""
    server, headers, _ = schema_target
    reply = httpx.post(
        f"{server.url}{path}",
        content=body,
        headers=headers | {"content-type": "application/json"},
        timeout=30,
    )
    assert (reply.status_code, reply.json()["code"]) == (422, "validation_error"), reply.text
    listing = httpx.get(f"{server.url}/api/v1/rules", headers=headers, timeout=30).json()
    assert not [rule for rule in listing if rule["rule"]["name"].endswith(" probe")]
