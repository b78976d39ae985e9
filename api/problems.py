"""Every error leaves the API as `application/problem+json` (RFC 9457), never as a stack trace.

The OpenAPI document says so too: `ProblemDetails` is its `Problem` schema, `problem_responses`
lists the problems a route answers by `code` (an example each), and `document` adds to every
route the ones that follow from its kind (authentication, a body), so decorators name only
their own.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.access import ROLES, allowed
from core.rules.limits import RuleTooComplex

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)

# The code of a problem raised without one (by Starlette, FastAPI or a route), per status, so
# that every problem carries a code clients can branch on; any other status gets `http_<status>`.
DEFAULT_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
# What a route that needs a permission can answer before it runs (api.deps.authenticate).
AUTH_CODES = ("no_credentials", "bad_token", "bad_api_key", "account_disabled")
_REF = "#/components/schemas/"


class FieldError(BaseModel):
    """One input that failed validation."""

    loc: list[str | int] = Field(
        description='Where: e.g. ["body", "rule", "name"], ["query", "limit"].'
    )
    msg: str
    type: str = Field(description="pydantic's error type, e.g. `missing`, `string_too_long`.")


class ProblemDetails(BaseModel):
    """An error (RFC 9457). Programs branch on `code`, which is stable; `detail` is for people
    and may change. Some problems carry more fields (`errors`, `limit`, `retry_after`...)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="https://mugpos.dev/problems/{code}")
    title: str = Field(description="The HTTP status phrase.")
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str = Field(description="The path of the request.")
    code: str = Field(pattern=r"^[a-z0-9_]+$", examples=["unknown_rule"])
    errors: list[FieldError] | None = Field(
        None, description="With `validation_error`: every input that failed, not only the first."
    )


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    code = code or DEFAULT_CODES.get(status, f"http_{status}")
    body: dict[str, object] = {
        "type": f"https://mugpos.dev/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _example(status: int, code: str) -> dict[str, object]:
    return {
        "type": f"https://mugpos.dev/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": HTTPStatus(status).description,
        "instance": "/api/v1/…",
        "code": code,
    }


_HEADERS: dict[int, dict[str, object]] = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds until a retry may succeed.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def _problem_doc(status: int, codes: list[str]) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    doc: dict[str, Any] = {
        "description": f"{phrase}: " + ", ".join(f"`{code}`" for code in codes),
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": f"{_REF}Problem"},
                "examples": {code: {"value": _example(status, code)} for code in codes},
            }
        },
    }
    if status in _HEADERS:
        doc["headers"] = _HEADERS[status]
    return doc


def _codes_of(doc: dict[str, Any] | None) -> list[str]:
    examples = ((doc or {}).get("content") or {}).get(PROBLEM_JSON, {}).get("examples") or {}
    return list(examples)


def problem_responses(**codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the problems a route answers itself, by code: `problem_responses(
    unknown_rule=404, rule_unreadable=409)` documents both as problem+json, an example each."""
    named: dict[int, list[str]] = {}
    for code, status in codes.items():
        named.setdefault(status, []).append(code)
    return {status: _problem_doc(status, names) for status, names in named.items()}


def _permission(route: APIRoute) -> str | None:
    """The permission `api.deps.require` checks for this route, if any."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        permission = getattr(dependency.call, "permission", None)
        if permission is not None:
            return permission
        stack.extend(dependency.dependencies)
    return None


def document(router: APIRouter) -> None:
    """Add to each route of `router` the problems that follow from its kind: 401 and 429 where a
    permission is checked (and 403 unless every role holds it), 400 and 413 where it reads a
    body, 422 where it validates parameters or a body (FastAPI's own 422 entry would say
    `application/json`)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        derived: dict[int, tuple[str, ...]] = {}
        permission = _permission(route)
        if permission is not None:
            derived[401] = AUTH_CODES
            derived[429] = ("rate_limited",)
            if not all(allowed(role, permission) for role in ROLES):
                derived[403] = ("forbidden",)
        if route.body_field is not None:
            derived[400] = ("bad_request",)  # a body FastAPI cannot parse at all
            derived[413] = ("request_too_large",)
        if route.body_field is not None or get_flat_params(route.dependant):
            derived[422] = ("validation_error",)
        for status, codes in derived.items():
            known = _codes_of(route.responses.get(status))
            route.responses[status] = _problem_doc(
                status, known + [code for code in codes if code not in known]
            )


def _allowed_methods(app: FastAPI, path: str) -> str | None:
    """The methods the document lists for `path` (and HEAD with GET, as Starlette serves it).
    Starlette's 405 names only the methods of the first route matching the path, and a resource
    served by two routes (GET and POST /api/v1/rules) has more: RFC 9110 wants them all."""
    matches: dict[int, set[str]] = {}  # methods by the number of literal segments matched
    segments = path.split("/")
    for template, operations in app.openapi()["paths"].items():
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            want == got or (want.startswith("{") and bool(got))
            for want, got in zip(parts, segments, strict=True)
        ):
            literal = sum(not part.startswith("{") for part in parts)
            matches.setdefault(literal, set()).update(method.upper() for method in operations)
    # OpenAPI: a concrete path is matched before a templated one (/rules/parse, /rules/{rule_id}).
    methods = matches[max(matches)] if matches else set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) or None


def openapi_components() -> dict[str, Any]:
    """The `Problem` schema (and what it refers to), for the document's components."""
    schema = ProblemDetails.model_json_schema(ref_template=_REF + "{model}")
    return {**schema.pop("$defs", {}), "Problem": schema}


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, code=exc.code, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(app, request.url.path) or headers.get("Allow", "")
        return problem_response(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        for error in exc.errors():  # a rule body over a limit: the same answer as from a route
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, RuleTooComplex):
                return problem_response(
                    request, 422, str(cause), code=cause.code, **cause.as_dict()
                )
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem_response(
            request, 422, "the request is not valid", code="validation_error", errors=errors
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "internal error; it has been logged")
