"""POSTing webhook bodies, only where webhooks may go.

The SSRF guard sits in the connection's DNS resolver (aiohttp asks it for every connection), so
the address checked is the address connected to: a name that resolved to a public address when
the endpoint was registered and to 169.254.169.254 now is refused now. IP literals skip the
resolver and are checked before the request. Redirects are not followed (a 3xx could point
anywhere).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from core.webhooks import refused_address

USER_AGENT = "mugpos-webhooks/1"


class TargetRefused(Exception):
    """The URL may not receive webhooks; the message says why (for the operator)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One attempt: the receiver's status, or why there was none."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Worth another try: no answer, a 5xx, 408 or 429. Other answers will not change."""
        return self.status is None or self.status >= 500 or self.status in (408, 429)


def check_url(url: str, allowed: Sequence[str]) -> str | None:
    """Why `url` cannot be a webhook target without looking its host up (None: it can)."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises on one out of range
        host = host.encode("idna").decode() if host else host  # raises on a label too long
    except (ValueError, UnicodeError):
        return "not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "a webhook URL starts with http:// or https://"
    if not host:
        return "a webhook URL names a host"
    if parts.port == 0:
        return "port 0 is no port"
    if parts.username or parts.password:
        return "a webhook URL carries no credentials (the signature authenticates it)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked when it is resolved
    kind = refused_address(address, allowed)
    return f"{address} is a {kind} address" if kind else None


async def check_target(url: str, allowed: Sequence[str]) -> str | None:
    """Why `url` cannot be a webhook target now, its host looked up (None: it can)."""
    why = check_url(url, allowed)
    if why is not None:
        return why
    host = urlsplit(url).hostname
    assert host is not None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return f"{host} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        kind = refused_address(address, allowed)
        if kind is not None:
            return f"{host} resolves to {address}, a {kind} address"
    return None


class _GuardedResolver(AbstractResolver):
    def __init__(self, allowed: Sequence[str]) -> None:
        self._allowed = allowed
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for info in found:
            address = ipaddress.ip_address(info["host"])
            kind = refused_address(address, self._allowed)
            if kind is not None:
                raise TargetRefused(f"{host} resolves to {address}, a {kind} address")
        return found

    async def close(self) -> None:
        await self._inner.close()


class WebhookClient:
    """One HTTP session for every delivery of a process."""

    def __init__(self, *, timeout_s: float, allowed: Sequence[str]) -> None:
        self._allowed = list(allowed)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=_GuardedResolver(self._allowed)),
                timeout=self._timeout,
                headers={"user-agent": USER_AGENT},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One attempt. Raises TargetRefused where the guard refuses the URL."""
        why = check_url(url, self._allowed)
        if why is not None:
            raise TargetRefused(why)
        request: dict[str, Any] = {
            "data": body,
            "headers": {"content-type": "application/json", **headers},
            "allow_redirects": False,
        }
        try:
            async with self._open().post(url, **request) as response:
                await response.read()  # the connection goes back to the pool
                error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
                return Answer(response.status, error)
        except TargetRefused:
            raise
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.__cause__, TargetRefused):
                raise exc.__cause__ from None
            return Answer(None, f"cannot connect: {exc.os_error.strerror or exc.os_error}")
        except TimeoutError:
            return Answer(None, f"no answer within {self._timeout.total:g} s")
        except aiohttp.ClientError as exc:
            return Answer(None, type(exc).__name__)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
