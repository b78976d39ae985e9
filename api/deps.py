"""FastAPI dependencies: the services, the authenticated caller, permissions and rate limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api import tokens
from api.client_ip import client_ip
from api.problems import Problem
from api.services import ApiServices
from core.access import PERMISSIONS, Principal, allowed
from infra import activity_log

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A machine client's key.")


async def services(request: Request) -> ApiServices:
    """A coroutine on purpose: FastAPI runs a plain-def dependency on its thread pool, a thread
    hand-off on every request for a dictionary lookup."""
    return services_of(request)


def services_of(request: Request) -> ApiServices:
    return request.app.state.services


async def audit(
    request: Request, action: str, resource: str, detail: dict[str, object] | None = None
) -> None:
    """An `activity_logs` entry for a write by the authenticated caller of this request."""
    principal: Principal = request.state.principal
    await activity_log.record(
        services_of(request).db,
        user_id=principal.subject,
        action=action,
        resource=resource,
        ip=client_ip(request),
        detail=detail,
    )


def audit_later(request: Request, action: str, resource: str) -> None:
    """`audit`, written in a batch within ~50 ms instead of before the answer: for uploads, whose
    request path waits on Kafka alone (infra.write_behind says what a crash can lose)."""
    principal: Principal = request.state.principal
    services_of(request).audit_log.add(
        activity_log.entry(
            user_id=principal.subject, action=action, resource=resource, ip=client_ip(request)
        )
    )


async def check_rate(svc: ApiServices, request: Request, caller: str | None) -> None:
    retry = await svc.limiter.retry_after(caller, client_ip(request))
    if retry is not None:
        raise Problem(
            429,
            f"rate limit exceeded; retry in {retry} s",
            code="rate_limited",
            headers={"Retry-After": str(retry)},
        )


async def authenticate(svc: ApiServices, bearer: str | None, api_key: str | None) -> Principal:
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if api_key:
        principal = await svc.users.resolve_api_key(api_key)
        if principal is None:
            raise Problem(
                401, "unknown or revoked API key", code="bad_api_key", headers=unauthorized
            )
        return principal
    if not bearer:
        raise Problem(401, "authentication required", code="no_credentials", headers=unauthorized)
    try:
        principal = tokens.verify(svc.jwt_secret, svc.settings.jwt_issuer, bearer)
    except tokens.InvalidToken as exc:
        raise Problem(401, str(exc), code="bad_token", headers=unauthorized) from None
    role = await svc.users.role_of(principal.subject)
    if role is None:
        raise Problem(
            401,
            "the token's user no longer exists or is disabled",
            code="account_disabled",
            headers=unauthorized,
        )
    return Principal(principal.subject, role, "user")


async def identify(
    svc: ApiServices,
    request: Request,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
) -> Principal:
    """The caller behind the credentials, within its rate limits; a refusal counts against the
    client's IP."""
    try:
        principal = await authenticate(svc, bearer.credentials if bearer else None, api_key)
    except Problem:
        await check_rate(svc, request, None)
        raise
    await check_rate(svc, request, f"{principal.kind}:{principal.subject}")
    return principal


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: an authenticated caller holding `permission`, within its rate limits."""
    if permission not in PERMISSIONS:  # at import: a misspelt permission would refuse everyone
        raise ValueError(f"unknown permission {permission!r}; core.access.PERMISSIONS lists them")

    async def dependency(
        request: Request,
        svc: Annotated[ApiServices, Depends(services)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        principal = await identify(svc, request, bearer, api_key)
        if not allowed(principal.role, permission):
            raise Problem(
                403, f"role {principal.role!r} lacks permission {permission!r}", code="forbidden"
            )
        request.state.principal = principal
        return principal

    dependency.permission = permission  # type: ignore[attr-defined] - read by the docs and tests
    return dependency
