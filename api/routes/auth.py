"""Tokens for people (password → JWT), accounts and API keys (admin only)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel, EmailStr, Field

from api import tokens
from api.deps import audit, check_rate, client_ip, require, services
from api.problems import Problem
from api.services import ApiServices
from core.access import Principal, Role
from infra import activity_log
from infra.users_store import UserExists

router = APIRouter(prefix="/api/v1", tags=["auth"])
Services = Annotated[ApiServices, Depends(services)]
_NAME = r"^[A-Za-z0-9._@-]{1,64}$"


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int
    role: Role


class NewUser(BaseModel):
    username: str = Field(pattern=_NAME)
    password: str = Field(min_length=12, max_length=256)
    role: Role
    email: EmailStr | None = None


class NewApiKey(BaseModel):
    name: str = Field(pattern=_NAME)
    role: Role


class CreatedApiKey(BaseModel):
    name: str
    role: Role
    api_key: str = Field(description="Shown once; only its hash is stored.")


@router.post("/auth/token", response_model=Token)
async def token(
    request: Request,
    svc: Services,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
) -> Token:
    """OAuth2 password flow: form fields `username` and `password`."""
    await check_rate(svc, request, None)
    principal = await svc.users.authenticate(username, password)
    await activity_log.record(
        svc.db,
        user_id=username,
        action="auth.login",
        resource="token",
        outcome="ok" if principal else "denied",
        ip=client_ip(request),
    )
    if principal is None:
        raise Problem(401, "wrong username or password", code="bad_credentials")
    ttl = svc.settings.jwt_ttl_s
    jwt = tokens.issue(svc.jwt_secret, svc.settings.jwt_issuer, ttl, principal)
    return Token(access_token=jwt, expires_in=ttl, role=principal.role)


@router.post("/users", status_code=201)
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


@router.post("/api-keys", status_code=201, response_model=CreatedApiKey)
async def add_api_key(
    body: NewApiKey,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("write:users"))],
) -> CreatedApiKey:
    key = await svc.users.add_api_key(body.name, body.role)
    await audit(request, "api_keys.add", body.name)
    return CreatedApiKey(name=body.name, role=body.role, api_key=key)
