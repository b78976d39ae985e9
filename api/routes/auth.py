"""Tokens for people (password → JWT), accounts and API keys (admin only).

Logins are throttled per (account, client IP) (infra.login_throttle); disabling or deleting a
user, or revoking a key, is audited like every other write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from pydantic import BaseModel, Field

from api import tokens
from api.client_ip import client_ip
from api.deps import audit, check_rate, require, services
from api.problems import Problem, problem_responses
from api.routes import JsonRoute, links
from api.services import ApiServices
from core.access import Principal, Role, permissions_of
from infra import activity_log
from infra.users_store import KeyNotFound, LastAdmin, UserExists, UserNotFound, key_id_of

router = APIRouter(prefix="/api/v1", tags=["auth"], route_class=JsonRoute)
Services = Annotated[ApiServices, Depends(services)]
_NAME = r"^[A-Za-z0-9._@-]{1,64}$"
Username = Annotated[str, Path(pattern=_NAME)]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int
    role: Role
    permissions: list[str] = Field(
        description="What this role may do (`action:resource`): a client hides what it cannot "
        "use; the API still checks every request."
    )


class NewUser(BaseModel):
    username: str = Field(pattern=_NAME)
    password: str = Field(min_length=12, max_length=256)
    role: Role
    # As much of an address as the document can state, and so all that is checked: pydantic's
    # EmailStr also refuses reserved domains (user@host.test), which no JSON Schema format does.
    # (Spaces and controls spelled out: `\s` means other characters to JSON Schema's regexes.)
    email: str | None = Field(
        None, max_length=254, pattern=r"^[^@\x00-\x20]+@[^@\x00-\x20]+\.[^@\x00-\x20]+$"
    )


class NewApiKey(BaseModel):
    name: str = Field(pattern=_NAME)
    role: Role


class CreatedApiKey(BaseModel):
    key_id: str = Field(description="What `DELETE /api/v1/api-keys/{key_id}` revokes it by.")
    name: str
    role: Role
    api_key: str = Field(description="Shown once; only its hash is stored.")


class ApiKeyInfo(BaseModel):
    key_id: str
    name: str
    role: Role
    revoked: bool
    created_at: datetime


class UserState(BaseModel):
    username: str
    disabled: bool


@router.post(
    "/auth/token",
    response_model=Token,
    responses=problem_responses(bad_credentials=401, rate_limited=429, login_throttled=429),
)
async def token(
    request: Request,
    svc: Services,
    # An empty form field reaches FastAPI as a missing one (422): the document says non-empty.
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
) -> Token:
    """OAuth2 password flow: form fields `username` and `password`. After a few failures for one
    account from one address, further attempts from there wait (429 `login_throttled`)."""
    await check_rate(svc, request, None)
    ip = client_ip(request)
    attempt = await svc.limiter.login.attempt(username, ip)
    if attempt.refused:
        raise Problem(
            429,
            f"too many failed logins for this account from this address; "
            f"retry in {attempt.retry_after} s",
            code="login_throttled",
            headers={"Retry-After": str(attempt.retry_after)},
        )
    principal = await svc.users.authenticate(username, password)
    await activity_log.record(
        svc.db,
        user_id=username,
        action="auth.login",
        resource="token",
        outcome="ok" if principal else "denied",
        ip=ip,
    )
    if principal is None:
        await svc.limiter.login.failed(username, ip, attempt)
        if attempt.delay_s:
            await activity_log.record(
                svc.db,
                user_id=username,
                action="auth.throttle",
                resource="token",
                outcome="throttled",
                ip=ip,
                detail={"failures": attempt.failures, "delay_s": attempt.delay_s},
            )
        raise Problem(
            401,
            "wrong username or password",
            code="bad_credentials",
            headers={"WWW-Authenticate": "Bearer"},  # RFC 9110: every 401 names a scheme
        )
    await svc.limiter.login.succeeded(username, ip)
    ttl = svc.settings.jwt_ttl_s
    jwt = tokens.issue(svc.jwt_secret, svc.settings.jwt_issuer, ttl, principal)
    return Token(
        access_token=jwt,
        expires_in=ttl,
        role=principal.role,
        permissions=permissions_of(principal.role),
    )


@router.post(
    "/users",
    status_code=201,
    responses={
        201: {
            "links": links(
                "username",
                DisableUser=("POST", "/api/v1/users/{username}/disable"),
                EnableUser=("POST", "/api/v1/users/{username}/enable"),
                DeleteUser=("DELETE", "/api/v1/users/{username}"),
            )
        },
        **problem_responses(user_exists=409, bad_user=422),
    },
)
async def add_user(
    body: NewUser,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("write:users"))],
) -> dict[str, str]:
    try:
        await svc.users.add_user(body.username, body.password, body.role, body.email)
    except UserExists as exc:
        raise Problem(409, str(exc), code="user_exists") from None
    except ValueError as exc:
        raise Problem(422, str(exc), code="bad_user") from None
    await audit(request, "users.add", body.username)
    return {"username": body.username, "role": body.role}


@router.post(
    "/api-keys",
    status_code=201,
    response_model=CreatedApiKey,
    responses={
        201: {"links": links("key_id", RevokeApiKey=("DELETE", "/api/v1/api-keys/{key_id}"))}
    },
)
async def add_api_key(
    body: NewApiKey,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("write:users"))],
) -> CreatedApiKey:
    key = await svc.users.add_api_key(body.name, body.role)
    await audit(request, "api_keys.add", body.name)
    return CreatedApiKey(key_id=key_id_of(key), name=body.name, role=body.role, api_key=key)


@router.get("/api-keys", response_model=list[ApiKeyInfo])
async def list_api_keys(
    svc: Services, _: Annotated[Principal, Depends(require("read:users"))]
) -> list[dict[str, object]]:
    """Every API key, revoked ones included, without secrets."""
    return await svc.users.api_keys()


@router.delete(
    "/api-keys/{key_id}", status_code=204, responses=problem_responses(api_key_not_found=404)
)
async def revoke_api_key(
    key_id: KeyId,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("delete:users"))],
) -> Response:
    """Revoke a key: refused from its next request on, in every API process."""
    try:
        await svc.users.revoke_api_key(key_id)
    except KeyNotFound as exc:
        raise Problem(404, str(exc), code="api_key_not_found") from None
    await audit(request, "api_keys.revoke", key_id)
    return Response(status_code=204)


@router.post(
    "/users/{username}/disable",
    response_model=UserState,
    responses=problem_responses(user_not_found=404, last_admin=409),
)
async def disable_user(
    username: Username,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("write:users"))],
) -> UserState:
    """The user can no longer log in; tokens already issued stop working within seconds."""
    await _change_user(request, svc, username, "users.disable", svc.users.set_disabled, True)
    return UserState(username=username, disabled=True)


@router.post(
    "/users/{username}/enable",
    response_model=UserState,
    responses=problem_responses(user_not_found=404),
)
async def enable_user(
    username: Username,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("write:users"))],
) -> UserState:
    await _change_user(request, svc, username, "users.enable", svc.users.set_disabled, False)
    return UserState(username=username, disabled=False)


@router.delete(
    "/users/{username}",
    status_code=204,
    responses=problem_responses(user_not_found=404, last_admin=409),
)
async def delete_user(
    username: Username,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("delete:users"))],
) -> Response:
    await _change_user(request, svc, username, "users.delete", svc.users.delete_user)
    return Response(status_code=204)


async def _change_user(
    request: Request,
    svc: ApiServices,
    username: str,
    action: str,
    change: Callable[..., Awaitable[None]],
    *args: object,
) -> None:
    """Apply `change(username, *args)`, answer its refusals as problems, audit it."""
    try:
        await change(username, *args)
    except UserNotFound as exc:
        raise Problem(404, str(exc), code="user_not_found") from None
    except LastAdmin as exc:
        raise Problem(409, str(exc), code="last_admin") from None
    await audit(request, action, username)
