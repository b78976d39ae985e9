"""schemathesis checks of our own: `hooks` in schemathesis.toml loads this file."""

from __future__ import annotations

import schemathesis

PROBLEM_JSON = "application/problem+json"


@schemathesis.check
def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every error is problem+json with a stable `code` and its own status (unless the document
    names another type for it: /ready's 503 is its verdict); and a request the document calls
    valid is never refused as `validation_error` (the document and the models would disagree:
    what a schema cannot say is refused with a code of its own)."""
    if response.status_code < 400:
        return
    documented = case.operation.definition.raw["responses"].get(str(response.status_code), {})
    if PROBLEM_JSON not in documented.get("content", {PROBLEM_JSON: {}}):
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type == PROBLEM_JSON, f"{response.status_code} answered as {content_type!r}"
    body = response.json()
    assert body["code"], "a problem without a code"
    assert body["status"] == response.status_code, "the problem's status is not the answer's"
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive:
        assert body["code"] != "validation_error", f"a schema-valid request refused: {body}"


# The API refuses every webhook URL schemathesis makes up (none points to a public address), so
# half the schema-valid PUTs of an endpoint go out with a public address literal instead (never
# contacted: no dispatcher runs): endpoints get created, and their answers, links and deletion
# are checked too.
PUBLIC_WEBHOOK_URL = "https://93.184.215.14/schemathesis"


@schemathesis.hook("before_call").apply_to(path="/api/v1/webhooks/{name}", method="PUT")
def reachable_webhook_url(
    ctx: schemathesis.HookContext, case: schemathesis.Case, **kwargs: object
) -> None:
    meta = case.meta
    name = (case.path_parameters or {}).get("name")
    if (
        meta is not None
        and meta.generation.mode.is_positive
        and isinstance(case.body, dict)
        and isinstance(case.body.get("url"), str)
        and isinstance(name, str)
        and sum(map(ord, name)) % 2 == 0
    ):
        case.body = {**case.body, "url": PUBLIC_WEBHOOK_URL}


# Most URLs schemathesis makes up name no network stream (422 `stream_invalid`), so half the
# schema-valid PUTs of a stream go out with a camera URL instead (RFC 5737, never read: no
# streams service runs): streams get created, read, replaced and deleted too.
CAMERA_URL = "rtsp://user:secret@192.0.2.7/schemathesis"


@schemathesis.hook("before_call").apply_to(path="/api/v1/sources/{source_id}/stream", method="PUT")
def camera_stream_url(
    ctx: schemathesis.HookContext, case: schemathesis.Case, **kwargs: object
) -> None:
    meta = case.meta
    source_id = (case.path_parameters or {}).get("source_id")
    if (
        meta is not None
        and meta.generation.mode.is_positive
        and isinstance(case.body, dict)
        and isinstance(case.body.get("url"), str)
        and isinstance(source_id, str)
        and sum(map(ord, source_id)) % 2 == 0
    ):
        case.body = {**case.body, "url": CAMERA_URL}
