"""The client's IP address, computed here only, for the rate limits, the login throttle, the audit
log and the access log alike.

`X-Forwarded-For` is written by whoever sends the request, so it counts only when the direct peer
is one of MUGPOS_TRUSTED_PROXIES. Each proxy appends the address it received the request from, so
the header is read right to left, past the trusted proxies: the first address that is not one is
the client, and everything left of it is that client's own claim. The server must leave the peer
alone for this (uvicorn's `proxy_headers=False`, as `mugpos api` runs it): uvicorn otherwise
rewrites it from the header for loopback peers before the app sees it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from starlette.requests import HTTPConnection

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def client_ip(conn: HTTPConnection) -> str:
    """The client of this request or WebSocket (`HTTPConnection(scope)` in an ASGI middleware)."""
    peer = conn.scope.get("client")
    svc = getattr(conn.app.state, "services", None)
    trusted = trusted_networks(svc.settings.trusted_proxies if svc is not None else "")
    return resolve(peer[0] if peer else None, conn.headers.getlist("x-forwarded-for"), trusted)


def resolve(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The right-most address not in `trusted`, walking from the peer into `X-Forwarded-For`.

    A hop that is no IP address ends the walk at the last trusted one: a trusted proxy wrote that
    hop, so nothing further left can be vouched for."""
    if peer is None:
        return UNKNOWN
    address = _parse(peer)
    if address is None or not _is_trusted(address, trusted):
        return str(address) if address is not None else peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        previous, address = address, _parse(hop)
        if address is None:
            return str(previous)
        if not _is_trusted(address, trusted):
            return str(address)
    return str(address)  # every hop is a trusted proxy: the left-most is as far as anyone knows


@lru_cache(maxsize=16)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """The networks of a MUGPOS_TRUSTED_PROXIES value (validated when the settings load)."""
    return tuple(ipaddress.ip_network(part, strict=False) for part in spec.split(",") if part)


def _is_trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address in network for network in trusted)


def _parse(hop: str) -> Address | None:
    """An address from a hop that may carry a port (`1.2.3.4:80`, `[::1]:80`); IPv4-mapped IPv6
    addresses become IPv4, so one client has one spelling."""
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
