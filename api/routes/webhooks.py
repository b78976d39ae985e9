"""Webhook endpoints: the named URLs that rules' `webhook` actions and sources' `webhooks` send
alert events to, each with a format and an HMAC signing secret; and the delivery log.

The signing secret is stored encrypted (MUGPOS_ENCRYPTION_KEY; without it writes answer 503
`secrets_unavailable`) and is shown once: in the answer that created or rotated it. A URL that
points into the service's own network (loopback, private, link-local such as cloud metadata)
is refused with 422 `webhook_target_refused` unless MUGPOS_WEBHOOK_ALLOW_NETWORKS holds it; the
dispatcher checks the address again on every connection.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic.json_schema import SkipJsonSchema

from api.deps import audit, require, services
from api.problems import Problem, problem_responses
from api.routes import JsonRoute, links
from api.services import ApiServices
from core.access import Principal
from core.webhooks import ENDPOINT_NAME_PATTERN, Format
from infra.webhook_client import check_target
from infra.webhooks_store import DeliveryStatus, Endpoint, SecretsUnavailable

router = APIRouter(prefix="/api/v1", tags=["webhooks"], route_class=JsonRoute)
_ONE = f"{router.prefix}/webhooks/{{name}}"
Services = Annotated[ApiServices, Depends(services)]
Name = Annotated[
    str,
    Path(
        pattern=ENDPOINT_NAME_PATTERN,
        description="What rules' webhook actions and sources' `webhooks` name it by.",
        examples=["ops-slack"],
    ),
]
# Longest a registration waits for the URL's host to resolve (the SSRF check looks it up).
RESOLVE_TIMEOUT_S = 10.0
MAX_URL_LENGTH = 2000


class WebhookInput(BaseModel):
    """An endpoint's settings; a PUT replaces them all."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=MAX_URL_LENGTH,
        description="http:// or https://; not into private, loopback or link-local networks "
        "unless MUGPOS_WEBHOOK_ALLOW_NETWORKS allows them.",
        examples=["https://hooks.example.com/mugpos"],
    )
    format: Format = Field(
        "json",
        description="`json`: the alert event itself; `slack`: a Slack incoming-webhook message.",
    )
    # Strict: JSON `1` or `"yes"` is no boolean here.
    enabled: StrictBool = Field(True, description="A disabled endpoint is sent nothing.")
    rotate_secret: StrictBool = Field(
        False, description="Issue a new signing secret (the answer shows it, once)."
    )


class WebhookOut(BaseModel):
    """An endpoint as stored; its signing secret is never shown again after it was issued."""

    name: str
    url: str
    format: Format
    enabled: bool
    created_at: datetime
    updated_at: datetime
    updated_by: str | None


class WebhookWritten(WebhookOut):
    """An endpoint after a PUT: with `secret` when one was issued."""

    secret: str | SkipJsonSchema[None] = Field(
        None,
        description="The HMAC-SHA256 signing secret, present only when this answer issued it "
        "(the endpoint was created, or `rotate_secret` was set): it is shown once and cannot be "
        "read back, so store it now.",
        json_schema_extra=lambda schema: schema.pop("default", None),
    )


class DeliveryOut(BaseModel):
    """One alert event's delivery to one endpoint."""

    delivery_id: str = Field(description="`{alert_id}:{endpoint}`.")
    alert_id: str
    endpoint: str
    event: str = Field(description="`raised` or `resolved`.")
    source_id: str
    rule_id: str
    dedup_key: str
    status: DeliveryStatus = Field(
        description="`pending` (being tried), `delivered`, `dead_lettered` (every try failed) or "
        "`refused` (the endpoint was missing, disabled or its address not allowed)."
    )
    attempts: int = Field(description="Requests made so far.")
    last_status_code: int | None = Field(None, description="The receiver's last HTTP status.")
    last_error: str | None = Field(None, description="Why the last try failed, if it did.")
    url: str | None = Field(None, description="Where the last try went.")
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None


def _not_found(name: str) -> Problem:
    return Problem(404, f"no webhook endpoint {name}", code="webhook_not_found")


def _out(endpoint: Endpoint) -> WebhookOut:
    return WebhookOut(**endpoint.public())


async def _refusal(url: str, allowed: list[str]) -> str | None:
    """Why `url` may not receive webhooks (None: it may), in words for the operator."""
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            return await check_target(url, allowed)
    except TimeoutError:
        return f"the URL's host did not resolve within {RESOLVE_TIMEOUT_S:g} s"


@router.get("/webhooks", response_model=list[WebhookOut])
async def list_webhooks(
    svc: Services, _: Annotated[Principal, Depends(require("read:webhooks"))]
) -> list[WebhookOut]:
    """Every webhook endpoint, by name (secrets are never shown)."""
    return [_out(e) for e in await svc.webhooks.list()]


@router.get(
    "/webhooks/{name}",
    response_model=WebhookOut,
    responses=problem_responses(webhook_not_found=404),
)
async def get_webhook(
    name: Name, svc: Services, _: Annotated[Principal, Depends(require("read:webhooks"))]
) -> WebhookOut:
    """One endpoint (its secret is never shown)."""
    endpoint = await svc.webhooks.get(name)
    if endpoint is None:
        raise _not_found(name)
    return _out(endpoint)


_WRITTEN_LINKS = links(
    "name",
    GetWebhook=("GET", _ONE),
    UpdateWebhook=("PUT", _ONE),
    DeleteWebhook=("DELETE", _ONE),
)


@router.put(
    "/webhooks/{name}",
    response_model=WebhookWritten,
    response_model_exclude_unset=True,
    responses={
        200: {"description": "Changed.", "links": _WRITTEN_LINKS},
        201: {
            "model": WebhookWritten,
            "description": "Created, with its signing secret (shown once).",
            "links": _WRITTEN_LINKS,
        },
        **problem_responses(webhook_target_refused=422, secrets_unavailable=503),
    },
)
async def put_webhook(
    name: Name,
    body: WebhookInput,
    request: Request,
    response: Response,
    svc: Services,
    who: Annotated[Principal, Depends(require("write:webhooks"))],
) -> WebhookWritten:
    """Creates the endpoint (201) or replaces its settings (200). The answer carries `secret`, the
    HMAC signing secret, only when it issued one: on creation, or with `rotate_secret`. **It is
    shown once** and cannot be read back. A URL the service may not reach (loopback, private or
    link-local addresses, other schemes than http(s), credentials in the URL, a host that does
    not resolve) is refused with 422 `webhook_target_refused`; without MUGPOS_ENCRYPTION_KEY
    endpoints cannot be written (503 `secrets_unavailable`)."""
    why = await _refusal(body.url, svc.settings.webhook_allow_networks)
    if why is not None:
        raise Problem(422, why, code="webhook_target_refused")
    try:
        endpoint, secret = await svc.webhooks.put(
            name,
            body.url,
            body.format,
            enabled=body.enabled,
            rotate_secret=body.rotate_secret,
            by=who.subject,
        )
    except SecretsUnavailable:
        raise Problem(
            503,
            "webhook endpoints cannot be written: the API has no MUGPOS_ENCRYPTION_KEY to "
            "encrypt their signing secrets with",
            code="secrets_unavailable",
        ) from None
    # A secret is issued on creation and on rotation; a rotation that created the endpoint left
    # both times equal (both are the insert's).
    created = secret is not None and (
        not body.rotate_secret or endpoint.created_at == endpoint.updated_at
    )
    if created:
        response.status_code = 201
    await audit(
        request,
        "webhooks.create" if created else "webhooks.update",
        name,
        # Not the URL: a Slack webhook's URL is itself a credential.
        {
            "format": body.format,
            "enabled": body.enabled,
            "secret_issued": secret is not None,
        },
    )
    written = WebhookWritten(**endpoint.public())
    if secret is not None:
        written.secret = secret
    return written


@router.delete(
    "/webhooks/{name}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(webhook_not_found=404),
)
async def delete_webhook(
    name: Name,
    request: Request,
    svc: Services,
    _: Annotated[Principal, Depends(require("delete:webhooks"))],
) -> Response:
    """Deletes the endpoint and its secret. Alert events that name it from then on are logged as
    `refused` deliveries; its delivery log stays."""
    if not await svc.webhooks.delete(name):
        raise _not_found(name)
    await audit(request, "webhooks.delete", name)
    return Response(status_code=204)


@router.get("/webhook-deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    svc: Services,
    _: Annotated[Principal, Depends(require("read:webhooks"))],
    endpoint: Annotated[
        str | None,
        Query(pattern=ENDPOINT_NAME_PATTERN, description="Only deliveries to this endpoint."),
    ] = None,
    status: Annotated[
        DeliveryStatus | None,
        Query(description=f"Only deliveries in this state: {', '.join(get_args(DeliveryStatus))}."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """The delivery log, newest first (entries are kept 30 days): one entry per alert event and
    endpoint, with its attempts and the receiver's last answer."""
    return await svc.webhook_deliveries.list(endpoint=endpoint, status=status, limit=limit)
