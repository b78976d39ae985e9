"""Webhook endpoints as the domain sees them: their names, how a delivery is signed, which
addresses a delivery may reach, and the body each format sends.

Signature: `X-Mugpos-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>` with the
timestamp (unix seconds) in `X-Mugpos-Timestamp`, as Stripe and Slack sign theirs: a receiver
recomputes it over the raw body and refuses old timestamps, so a captured delivery cannot be
replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import StringConstraints

# An endpoint's name: what rules' webhook actions and sources refer to.
ENDPOINT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
EndpointName = Annotated[str, StringConstraints(pattern=ENDPOINT_NAME_PATTERN)]
Format = Literal["json", "slack"]

SIGNATURE_HEADER = "X-Mugpos-Signature"
TIMESTAMP_HEADER = "X-Mugpos-Timestamp"
SIGNATURE_VERSION = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Mugpos-Signature` value of `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    """What a receiver does (the README shows it without this module, with a timestamp check)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# --- where a delivery may go --------------------------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refused_address(address: Address, allowed: Iterable[str]) -> str | None:
    """What kind of address `address` is, if a webhook must not reach it (None: it may). Loopback, private, link-local
    (cloud metadata at 169.254.169.254), multicast, reserved and unspecified addresses are
    refused unless a network in `allowed` (CIDR, e.g. 10.0.0.0/8 or 127.0.0.1/32) holds it:
    otherwise anyone who may register a webhook could make the service probe its own network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in allowed:
        if address in ipaddress.ip_network(network, strict=False):
            return None
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
    ):
        if flag:
            return kind
    return None


# --- bodies -------------------------------------------------------------------------------------

_SLACK_ICON = {"raised": ":warning:", "resolved": ":white_check_mark:"}


def body_of(alert: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """The JSON body sent for `alert` (schemas.messages.Alert, JSON mode): the alert itself, or
    a Slack incoming-webhook message."""
    if fmt == "json":
        return alert
    icon = _SLACK_ICON.get(alert["event"], "")
    where = f"{alert['source_id']} · {alert['subject']}"
    text = f"{icon} *{alert['rule']}* {alert['event']} ({alert['severity']}) — {where}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": alert["message"]}]},
        ],
    }
