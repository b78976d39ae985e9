"""A typed Python client of the mugpos HTTP API — the SDK the `mugpos` CLI itself uses.

    from mugpos.client import Client

    with Client("http://127.0.0.1:8000") as api:
        api.login("alice", "…")                      # or Client(url, api_key="…")
        submitted = api.submit(Path("desk.jpg"), source_id="desk-1")
        result = api.wait(submitted.request_id)     # a Result, or None after the timeout
        print(result.positioning["mugs"], [v.message for v in result.verdicts])

`Client.from_login()` uses what `mugpos login` stored (mugpos.credentials). Every refusal raises
`ApiError` with the problem's stable `code` (the API's problem+json); an unreachable API raises
`ApiUnreachable`. Its models mirror the API's OpenAPI document, and tests/unit/test_client_openapi.py
checks every operation and field against it.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, ConfigDict

from mugpos import credentials
from schemas.messages import AnalysisResult

ANALYZE = "/api/v1/analyze"
TOKEN = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret
ABOUT = "/api/v1/about"
LIVE = "/ws/control-plane"
SOURCES = "/api/v1/sources"
STREAMS = "/api/v1/streams"
WEBHOOKS = "/api/v1/webhooks"
WEBHOOK_DELIVERIES = "/api/v1/webhook-deliveries"
EVENTS_MAX_S = 300  # the events endpoint's longest `timeout`


class Result(AnalysisResult):
    """A finished result as the API serves it (fields a newer server adds are ignored)."""

    model_config = ConfigDict(extra="ignore")


class Pending(BaseModel):
    """An accepted image still in the pipeline."""

    request_id: str
    source_id: str
    status: Literal["pending"] = "pending"
    submitted_at: datetime | None = None


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int
    role: str
    permissions: list[str] = []


class Submitted(BaseModel):
    request_id: str
    status: Literal["pending"] = "pending"
    status_url: str
    source_id: str
    object_key: str | None = None
    image: dict[str, object]


class ResultPage(BaseModel):
    items: list[Result]
    next_cursor: str | None = None


class ApiError(Exception):
    """The API refused: `status` (HTTP), `code` (stable, e.g. `unsupported_format`), `detail`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{detail} ({code})" if code else detail)
        self.status, self.code, self.detail = status, code, detail


class ApiUnreachable(ApiError):
    """No answer from the API at all (not running, wrong address, network down)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, "unreachable", f"cannot reach the API at {url}: {reason}")


def _refusal(reply: httpx.Response) -> ApiError:
    try:
        problem = reply.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    detail = problem.get("detail") or problem.get("title") or reply.reason_phrase
    if not isinstance(detail, str):  # FastAPI's own 422 lists the invalid fields
        detail = json.dumps(detail)
    return ApiError(reply.status_code, str(problem.get("code") or ""), detail)


def _source_path(source_id: str) -> str:
    return f"{SOURCES}/{quote(source_id, safe='')}"


def _webhook_path(name: str) -> str:
    return f"{WEBHOOKS}/{quote(name, safe='')}"


class Client:
    """Synchronous calls over one connection pool; `watch` is the one async method (WebSocket)."""

    def __init__(
        self,
        url: str = credentials.DEFAULT_URL,
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token, self.api_key = token, api_key
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)

    @classmethod
    def from_login(cls, url: str | None = None, **options: Any) -> Client:
        """A client with what `mugpos login` stored, under MUGPOS_API_URL/_KEY/_TOKEN."""
        stored = credentials.load()
        return cls(
            url or stored.url,
            token=None if stored.expired else stored.token,
            api_key=stored.api_key,
            **options,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def headers(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            reply = self._http.request(method, path, headers=self.headers, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, type(exc).__name__) from exc
        if reply.status_code >= 400:
            raise _refusal(reply)
        return reply

    def login(self, username: str, password: str) -> Token:
        """Exchange a password for a bearer token, which this client then uses."""
        reply = self._call("POST", TOKEN, data={"username": username, "password": password})
        token = Token.model_validate_json(reply.content)
        self.token, self.api_key = token.access_token, None
        return token

    def about(self) -> dict[str, Any]:
        return self._call("GET", ABOUT).json()

    def submit(
        self,
        image: Path | bytes,
        *,
        filename: str | None = None,
        source_id: str = "api",
        confidence: float | None = None,
        wait_ms: int = 0,
    ) -> Submitted | Result:
        """Upload one image; a `Result` when `wait_ms` was given and the pipeline finished within
        it, else the acknowledgement (the image is durable in Kafka by then)."""
        if isinstance(image, Path):
            filename, data = filename or image.name, image.read_bytes()
        else:
            filename, data = filename or "image", image
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        form: dict[str, str] = {"source_id": source_id}
        if confidence is not None:
            form["options"] = json.dumps({"confidence": confidence})
        reply = self._call(
            "POST",
            ANALYZE,
            params={"wait": wait_ms} if wait_ms else None,
            data=form,
            files={"image": (filename, data, content_type)},
        )
        if reply.status_code == 200:
            return Result.model_validate_json(reply.content)
        return Submitted.model_validate_json(reply.content)

    def result(self, request_id: str) -> Result | Pending:
        """The stored result, or `Pending` while the image is in the pipeline."""
        body = self._call("GET", f"{ANALYZE}/{quote(request_id, safe='')}").json()
        if body.get("status") == "pending":
            return Pending.model_validate(body)
        return Result.model_validate(body)

    def wait(self, request_id: str, timeout_s: float = 60.0) -> Result | None:
        """The result as soon as it is stored (server-sent events, no polling); None when the
        timeout passes first."""
        path = f"{ANALYZE}/{quote(request_id, safe='')}/events"
        remaining = timeout_s
        while remaining > 0:
            window = max(1, min(EVENTS_MAX_S, int(remaining)))
            for event, data in self._events(path, window):
                if event == "result":
                    return Result.model_validate_json(data)
            remaining -= window
        return None

    def _events(self, path: str, window_s: int) -> Iterator[tuple[str, str]]:
        event = ""
        try:
            with self._http.stream(
                "GET",
                path,
                params={"timeout": window_s},
                headers=self.headers,
                timeout=httpx.Timeout(30.0, read=window_s + 30.0),
            ) as reply:
                if reply.status_code >= 400:
                    reply.read()
                    raise _refusal(reply)
                for line in reply.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        yield event, line.partition(":")[2].strip()
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, type(exc).__name__) from exc

    def image(self, request_id: str, *, annotated: bool = False) -> bytes:
        """The stored original, or the JPEG with boxes and verdicts drawn on it."""
        path = f"{ANALYZE}/{quote(request_id, safe='')}/image"
        return self._call("GET", path, params={"annotated": annotated}).content

    def results(
        self,
        *,
        source_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ResultPage:
        """One page of results, newest first; pass `next_cursor` back for older ones."""
        params = {"source_id": source_id, "status": status, "limit": limit, "cursor": cursor}
        reply = self._call("GET", ANALYZE, params={k: v for k, v in params.items() if v})
        return ResultPage.model_validate_json(reply.content)

    def sources(self) -> list[dict[str, Any]]:
        """Every registered source as it is now (`source_id`, `version`, `source`: its settings)."""
        return self._call("GET", SOURCES).json()

    def source(self, source_id: str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version is not None else {}
        return self._call("GET", _source_path(source_id), params=params).json()

    def put_source(self, source_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Create the source or store a new version of its settings (the API's SourceSpec)."""
        return self._call("PUT", _source_path(source_id), json=settings).json()

    def delete_source(self, source_id: str) -> dict[str, Any]:
        return self._call("DELETE", _source_path(source_id)).json()

    def source_state(self, source_id: str) -> dict[str, Any]:
        """The source's tracked mugs and held verdicts after its newest frame."""
        return self._call("GET", f"{_source_path(source_id)}/state").json()

    def streams(
        self,
        state: Literal["connecting", "connected", "reconnecting", "stopped", "failed"]
        | None = None,
    ) -> list[dict[str, Any]]:
        """Every camera stream the streams service reads, with its `health` (`state`, `fps`,
        counters, `last_frame_at`, `error`; null until the service picked it up), or those in
        `state`. Passwords in URLs are shown as `***`."""
        params = {"state": state} if state is not None else {}
        return self._call("GET", STREAMS, params=params).json()

    def stream(self, source_id: str) -> dict[str, Any]:
        """The source's stream and its health; ApiError `stream_not_found` when it has none."""
        return self._call("GET", f"{_source_path(source_id)}/stream").json()

    def put_stream(
        self,
        source_id: str,
        url: str,
        *,
        every_s: float = 1.0,
        on_change: bool = False,
        change_threshold: int = 2,
        rtsp_transport: Literal["tcp", "udp"] = "tcp",
    ) -> dict[str, Any]:
        """Create the source's stream or replace its settings (the streams service restarts it
        within 2 s). `url`: rtsp://, rtsps://, http:// or https://; anything else raises
        ApiError `stream_invalid`."""
        body = {
            "url": url,
            "every_s": every_s,
            "on_change": on_change,
            "change_threshold": change_threshold,
            "rtsp_transport": rtsp_transport,
        }
        return self._call("PUT", f"{_source_path(source_id)}/stream", json=body).json()

    def delete_stream(self, source_id: str) -> None:
        """Stop reading the source's stream; ApiError `stream_not_found` when it has none."""
        self._call("DELETE", f"{_source_path(source_id)}/stream")

    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook endpoint (`name`, `url`, `format`, `enabled`, `created_at`,
        `updated_at`, `updated_by`); signing secrets are never shown."""
        return self._call("GET", WEBHOOKS).json()

    def webhook(self, name: str) -> dict[str, Any]:
        """One webhook endpoint; ApiError `webhook_not_found` when there is none."""
        return self._call("GET", _webhook_path(name)).json()

    def put_webhook(
        self,
        name: str,
        url: str,
        *,
        format: Literal["json", "slack"] = "json",
        enabled: bool = True,
        rotate_secret: bool = False,
    ) -> dict[str, Any]:
        """Create the endpoint or replace its settings. The answer has `secret` (the HMAC
        signing secret) only when it issued one: on creation or with `rotate_secret`; it is
        shown once and cannot be read back. A URL the API may not reach (private, loopback or
        link-local addresses, a host that does not resolve) raises ApiError
        `webhook_target_refused`."""
        body = {"url": url, "format": format, "enabled": enabled, "rotate_secret": rotate_secret}
        return self._call("PUT", _webhook_path(name), json=body).json()

    def delete_webhook(self, name: str) -> None:
        """Delete the endpoint and its secret (its delivery log stays)."""
        self._call("DELETE", _webhook_path(name))

    def webhook_deliveries(
        self,
        *,
        endpoint: str | None = None,
        status: Literal["pending", "delivered", "dead_lettered", "refused"] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The webhook delivery log, newest first (at most `limit`, 1 to 500): one entry per
        alert event and endpoint, with its `status`, `attempts` and the receiver's last answer."""
        params: dict[str, Any] = {"endpoint": endpoint, "status": status, "limit": limit}
        reply = self._call(
            "GET", WEBHOOK_DELIVERIES, params={k: v for k, v in params.items() if v is not None}
        )
        return reply.json()

    async def watch(
        self, source_id: str | None = None, on_open: Callable[[], None] | None = None
    ) -> AsyncIterator[Result]:
        """Results as the pipeline stores them, live over the WebSocket, until cancelled. A
        dropped connection is reopened (results finished meanwhile are not replayed: fetch
        them with `results`); a refusal raises ApiError. `on_open` runs each time the API has
        accepted the subscription: results stored from then on will come."""
        import websockets
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        url = "ws" + self.url.removeprefix("http") + LIVE
        if source_id:
            url += f"?source_id={quote(source_id, safe='')}"
        delay = 0.5
        while True:
            try:
                async with websockets.connect(url, additional_headers=self.headers) as socket:
                    async for frame in socket:
                        delay = 0.5
                        message = orjson.loads(frame)
                        if message.get("type") == "hello" and on_open is not None:
                            on_open()
                        elif message.get("type") == "result":
                            yield Result.model_validate(message["data"])
            except ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code >= 4000:
                    code, _, detail = closed.rcvd.reason.partition(": ")
                    raise ApiError(closed.rcvd.code - 4000, code, detail or code) from None
            except (OSError, InvalidHandshake, TimeoutError):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
