"""Submit images, wait for or look up their results, query history, fetch the stored pictures."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, WithJsonSchema
from sse_starlette.sse import EventSourceResponse

from api.deps import audit_later, require, services
from api.problems import Problem, problem_responses
from api.routes import links
from api.services import ApiServices
from api.uploads import (
    Accepted,
    check_image,
    check_options,
    enqueue,
    expand_batch,
)
from core.access import Principal
from core.config import Settings
from core.imaging.annotate import annotate
from core.imaging.decode import CONTENT_TYPES
from core.positioning import CHECK_WORDS
from infra.object_store import ObjectNotFound
from infra.object_store.keys import result_key
from infra.results_history import BadCursor, ResultQuery, as_utc, query_results
from schemas.topics import INLINE_MAX_BYTES

router = APIRouter(prefix="/api/v1/analyze", tags=["analysis"])
Services = Annotated[ApiServices, Depends(services)]
_ONE = f"{router.prefix}/{{request_id}}"
_SOURCE = r"^[A-Za-z0-9._:-]{1,128}$"
# The form field: FastAPI reads an empty form field as an absent one, so "" means "api" too.
SourceField = Annotated[
    str,
    Form(
        pattern=r"^[A-Za-z0-9._:-]{0,128}$", description="Where the image comes from; empty: api."
    ),
]


def _iso_8601(value: object) -> object:
    """ISO 8601 text only, as the document's `date-time` says: pydantic alone would also take
    `0.5` for a Unix time."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


# A time filter, in UTC: one whose offset moves it past year 1 or 9999 is a 422, not a 500.
UtcDatetime = Annotated[datetime, BeforeValidator(_iso_8601), AfterValidator(as_utc)]
# The `options` form field: JSON text, documented as the object it carries (generated clients
# then send a JSON part); api.uploads.check_options parses and checks it.
Options = Annotated[
    str | None,
    Form(description='Processing options as a JSON object, e.g. {"confidence": 0.3}.'),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "confidence": {
                    "anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]
                }
            },
        }
    ),
]


class Submitted(BaseModel):
    request_id: str
    status: Literal["pending"] = "pending"
    status_url: str
    source_id: str
    object_key: str | None = Field(
        description="Where the original is kept, for an upload sent by claim check (over "
        f"{INLINE_MAX_BYTES // 1024} KiB); null for a smaller one, which travels inside the Kafka "
        "message and is kept by the worker (the result's `image.object_key`)."
    )
    image: dict[str, object]


class BatchItem(BaseModel):
    filename: str
    request_id: str | None = None
    status_url: str | None = None
    error: dict[str, object] | None = None


class BatchSubmitted(BaseModel):
    accepted: int
    refused: int
    items: list[BatchItem]


class ResultPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


def _status_url(request: Request, request_id: str) -> str:
    """`get_result`'s path, formatted (url_for searches every route, on every upload)."""
    return f"{request.scope.get('root_path', '')}{router.prefix}/{request_id}"


def _submitted(request: Request, item: Accepted) -> Submitted:
    return Submitted(
        request_id=item.request_id,
        status_url=_status_url(request, item.request_id),
        source_id=item.source_id,
        object_key=item.object_key,
        image={"format": item.format, "width": item.width, "height": item.height},
    )


async def _read_limited(svc: ApiServices, upload: UploadFile) -> bytes:
    data = await upload.read(svc.settings.max_image_bytes + 1)
    if len(data) > svc.settings.max_image_bytes:
        raise Problem(
            413,
            f"{upload.filename}: over the limit of {svc.settings.max_image_bytes} bytes",
            code="too_large",
        )
    return data


# What an upload is refused for once it is read (api.uploads.check_image and check_options).
_UPLOAD_CODES = {
    "empty_input": 400,
    "too_large": 413,
    "too_many_pixels": 413,
    "unsupported_format": 415,
    "content_type_mismatch": 415,
    "truncated_image": 422,
    "decode_error": 422,
    "animated_image": 422,
    "bad_headers": 422,
}


@router.post(
    "",
    status_code=202,
    response_model=Submitted,
    responses={
        202: {
            "links": links(
                "request_id",
                GetResult=("GET", _ONE),
                GetImage=("GET", f"{_ONE}/image"),
                ResultEvents=("GET", f"{_ONE}/events"),
            )
        },
        200: {
            "description": "The result, when `wait` was given and it was ready.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **problem_responses(**_UPLOAD_CODES, wait_too_long=422),
    },
)
async def submit(
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("write:analysis"))],
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or TIFF.")],
    source_id: SourceField = "api",
    options: Options = None,
    wait: Annotated[
        int,
        Query(
            ge=0,
            description="Milliseconds to wait for the result (0: answer at once); at most "
            "MUGPOS_API_MAX_WAIT_MS, the `maximum` stated here.",
        ),
    ] = 0,
) -> Any:
    """Check the image, enqueue it (durable in Kafka) and answer 202 — or the result, when
    `wait` is given and the pipeline finishes within it."""
    if wait > svc.settings.api_max_wait_ms:
        raise Problem(
            422, f"wait is at most {svc.settings.api_max_wait_ms} ms", code="wait_too_long"
        )
    parsed = check_options(options)
    data = await _read_limited(svc, image)
    try:
        kind, width, height = check_image(svc, data, image.content_type, image.filename or "image")
    except Problem:
        svc.metrics.analysis_requests.labels("refused").inc()
        raise
    item = await enqueue(svc, data, kind, (width, height), source_id, parsed)
    audit_later(request, "analysis.submit", item.request_id)
    result = await wait_for_result(svc, item.request_id, wait / 1000) if wait else None
    return JSONResponse(result) if result else _submitted(request, item)


async def wait_for_result(svc: ApiServices, request_id: str, timeout_s: float) -> dict | None:
    """The result once stored, or None after `timeout_s`. The sink stores before it publishes,
    so checking the stores *after* registering the waiter cannot miss a result."""
    with svc.hub.waiting(request_id) as future:
        found = await svc.results.find(request_id)
        if found is not None and found.get("status") != "pending":
            return found
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchSubmitted,
    responses=problem_responses(empty_batch=400, batch_too_large=413, bad_zip=422, bad_headers=422),
)
async def submit_batch(
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("write:analysis"))],
    images: Annotated[
        list[UploadFile], File(min_length=1, description="Images, or one .zip of images.")
    ],
    source_id: SourceField = "api",
    options: Options = None,
) -> BatchSubmitted:
    """Several images (or a zip of them); each is checked and enqueued on its own, so one bad file
    does not refuse the others."""
    parsed = check_options(options)
    # Bounded by MUGPOS_API_MAX_REQUEST_BYTES; zips are inflated off the event loop.
    uploads = [(u.filename or "image", await u.read(), u.content_type) for u in images]
    files = await asyncio.to_thread(expand_batch, uploads, svc.settings)
    if not files:
        raise Problem(400, "no images in the request", code="empty_batch")
    items: list[BatchItem] = []
    for name, data, declared in files:
        try:
            if isinstance(data, Problem):  # refused while expanding: reported like any bad file
                raise data
            kind, width, height = check_image(svc, data, declared, name)
        except Problem as exc:
            svc.metrics.analysis_requests.labels("refused").inc()
            items.append(BatchItem(filename=name, error={"code": exc.code, "detail": exc.detail}))
            continue
        item = await enqueue(svc, data, kind, (width, height), source_id, parsed)
        items.append(
            BatchItem(
                filename=name,
                request_id=item.request_id,
                status_url=_status_url(request, item.request_id),
            )
        )
    accepted = [i.request_id for i in items if i.request_id]
    audit_later(request, "analysis.submit_batch", ",".join(accepted)[:1000])
    return BatchSubmitted(accepted=len(accepted), refused=len(items) - len(accepted), items=items)


@router.get("/{request_id}", name="get_result", responses=problem_responses(unknown_request=404))
async def get_result(
    request_id: str,
    svc: Services,
    _: Annotated[Principal, Depends(require("read:analysis"))],
) -> Any:
    """The stored result; `{"status": "pending"}` while the image is still in the pipeline."""
    found = await svc.results.find(request_id)
    if found is None:
        raise Problem(404, f"no request {request_id}", code="unknown_request")
    if found.get("status") == "pending":
        return {k: found[k] for k in ("request_id", "source_id", "status", "submitted_at")}
    return found


@router.get("", response_model=ResultPage, responses=problem_responses(bad_cursor=400))
async def list_results(
    svc: Services,
    _: Annotated[Principal, Depends(require("read:analysis"))],
    source_id: Annotated[str | None, Query(pattern=_SOURCE)] = None,
    status: Literal["pending", "ok", "rejected", "failed", "expired"] | None = None,
    failed_rule: Annotated[str | None, Query(max_length=64, description="A rule id.")] = None,
    min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
    since: UtcDatetime | None = None,
    until: UtcDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ResultPage:
    """Results newest first, filtered; follow `next_cursor` for older ones."""
    query = ResultQuery(source_id, status, failed_rule, min_score, since, until)
    try:
        items, next_cursor = await query_results(svc.db, query, limit=limit, cursor=cursor)
    except BadCursor as exc:
        raise Problem(400, str(exc), code="bad_cursor") from None
    return ResultPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{request_id}/image",
    response_class=Response,
    responses={
        200: {
            "description": "The original as uploaded, or the annotated JPEG.",
            "content": {media_type: {} for media_type in sorted(set(CONTENT_TYPES.values()))},
        },
        **problem_responses(no_image=404),
    },
)
async def get_image(
    request_id: str,
    svc: Services,
    _: Annotated[Principal, Depends(require("read:analysis"))],
    annotated: bool = False,
) -> Response:
    """The original image, or with `annotated=true` the boxes and verdicts drawn on it (rendered
    on first request and kept beside the result)."""
    found = await svc.results.find(request_id)
    image = (found or {}).get("image") or {}
    if not image.get("object_key"):
        raise Problem(404, f"no stored image for {request_id}", code="no_image")
    if annotated:
        when = datetime.fromisoformat(found["completed_at"])  # type: ignore[index]
        key = result_key(request_id, "annotated.jpg", when)
        try:
            return Response((await svc.store.get(key)).data, media_type="image/jpeg")
        except ObjectNotFound:
            pass
    try:
        original = await svc.store.get(image["object_key"])
    except ObjectNotFound:
        raise Problem(404, f"the stored image of {request_id} is gone", code="no_image") from None
    if not annotated:
        return Response(original.data, media_type=original.info.content_type)
    rendered = await asyncio.to_thread(_render, original.data, found)  # type: ignore[arg-type]
    await svc.store.put(key, rendered, content_type="image/jpeg")
    return Response(rendered, media_type="image/jpeg")


def _failed_rules(result: dict[str, Any]) -> dict[int, list[str]]:
    """By mug index, the names of the rules that failed for it (a verdict's `subjects`)."""
    failed: dict[int, list[str]] = {}
    for verdict in result.get("verdicts", []):
        if verdict["passed"] is False:
            for index in verdict["subjects"]:
                failed.setdefault(index, []).append(verdict.get("name") or verdict["rule_id"])
    return failed


def _reason(mug: dict[str, Any], rules: list[str]) -> str:
    """Why a mug fails, in a few words for its caption: its own checks, then the failed rules
    (annotate cuts it to a caption's length)."""
    parts = [CHECK_WORDS.get(check, check) for check in mug.get("failing") or ()] + rules
    return ", ".join(dict.fromkeys(parts))  # each once, in order


def _render(original: bytes, result: dict[str, Any]) -> bytes:
    """The annotated JPEG of a result: its detections, its mugs coloured by verdict and each
    failing mug's reason."""
    failed = _failed_rules(result)
    positioned = (result.get("positioning") or {}).get("mugs", [])
    mugs = [(m["box"], not m["failing"] and m["index"] not in failed) for m in positioned]
    reasons = {
        position: _reason(m, failed.get(m["index"], []))
        for position, m in enumerate(positioned)
        if not mugs[position][1]
    }
    detections = [
        (d["class_name"], d["role"], d["confidence"], d["box"])
        for d in result.get("detections", [])
    ]
    return annotate(original, detections, mugs, reasons=reasons)


@router.get(
    "/{request_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problem_responses(unknown_request=404),
    },
)
async def result_events(
    request_id: str,
    svc: Services,
    _: Annotated[Principal, Depends(require("read:analysis"))],
    wait_s: Annotated[
        int, Query(alias="timeout", ge=1, le=300, description="Seconds to wait.")
    ] = 60,
) -> EventSourceResponse:
    """Server-sent events for one request: `pending`, then `result` (or `timeout`). A request id
    nobody submitted is a 404 at once rather than a connection held open for `timeout`."""
    if await svc.results.find(request_id) is None:
        raise Problem(404, f"no request {request_id}", code="unknown_request")

    async def events():
        yield {"event": "pending", "data": orjson.dumps({"request_id": request_id}).decode()}
        result = await wait_for_result(svc, request_id, wait_s)
        if result is None:
            yield {"event": "timeout", "data": orjson.dumps({"request_id": request_id}).decode()}
        else:
            yield {"event": "result", "data": orjson.dumps(result).decode()}

    return EventSourceResponse(events())


def document_limits(schema: dict[str, Any], settings: Settings) -> None:
    """State this deployment's longest `wait` (MUGPOS_API_MAX_WAIT_MS) in its OpenAPI document:
    a longer one is refused (422 `wait_too_long`), and the document should say so."""
    for parameter in schema["paths"][router.prefix]["post"]["parameters"]:
        if parameter["name"] == "wait":
            parameter["schema"]["maximum"] = settings.api_max_wait_ms
