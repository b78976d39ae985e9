"""What an ingest URL names: a video file, a live stream (RTSP, HTTP/MJPEG), a local camera
device, or a folder to watch. Decided from the text alone (plus whether the path is a folder),
so a typo is reported before anything is opened."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class SourceKind(StrEnum):
    VIDEO = "video"  # a file, sampled on its own timeline; the command ends with it
    RTSP = "rtsp"
    HTTP = "http"  # MJPEG or any stream FFmpeg reads over HTTP(S)
    DEVICE = "device"  # /dev/videoN or a camera index
    FOLDER = "folder"  # image files, those there and those still to come


LIVE_KINDS = frozenset({SourceKind.RTSP, SourceKind.HTTP, SourceKind.DEVICE})
# What a stream managed through the API may read: network streams, never a path on the host.
NETWORK_KINDS = frozenset({SourceKind.RTSP, SourceKind.HTTP})
_SCHEMES = {
    "rtsp": SourceKind.RTSP,
    "rtsps": SourceKind.RTSP,
    "http": SourceKind.HTTP,
    "https": SourceKind.HTTP,
}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_DEVICE = re.compile(r"^(/dev/video\d+|\d+)$")
# A query parameter whose name says it holds a credential (cameras taking `?user=…&pwd=…`).
_CREDENTIAL_PARAM = re.compile(
    r"(?<=[?&;])(?P<name>[\w.\-]*?(?:passw|pwd|secret|token|key|auth|credential|sig)[\w.\-]*)"
    r"=[^&;#]+",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: SourceKind
    location: str  # the URL, path or device index

    @property
    def live(self) -> bool:
        """Live sources run until stopped, keep only their newest frame and reconnect."""
        return self.kind in LIVE_KINDS

    def shown(self) -> str:
        """The location without any password in it (rtsp://user:secret@cam/ …)."""
        return mask_url(self.location)


def mask_url(url: str) -> str:
    """`url` with the password of its user info, and the values of query parameters named like
    credentials (`pwd`, `password`, `token`, `key`…), shown as `***` (rtsp://user:***@cam/…). The
    user info is taken to end at the last `@` before any query, so a password holding `@` or
    `/` (unencoded) is masked whole; an `@` in a path can only mask too much, never too little."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "?#":
        if (at := rest.find(stop)) != -1:
            end = min(end, at)
    authority, tail = rest[:end], _CREDENTIAL_PARAM.sub(r"\g<name>=***", rest[end:])
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return f"{scheme}://{authority}{tail}"
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{tail}"


def network_stream(url: str) -> SourceSpec:
    """The spec of a network stream (rtsp, rtsps, http, https with a host), or ValueError saying
    why `url` is not one: a managed stream never reads a file, folder or device of the host."""
    if len(url) > 2000 or not url.isprintable() or any(c.isspace() for c in url):
        raise ValueError("a stream URL is at most 2000 printable characters without spaces")
    try:
        spec = classify_source(url)
    except ValueError:
        spec = SourceSpec(SourceKind.VIDEO, url)  # refused below, with the same words
    if spec.kind not in NETWORK_KINDS:
        raise ValueError(
            "a managed stream reads a network stream only: rtsp://, rtsps://, http:// or "
            "https:// (files, folders and camera devices: `mugpos ingest`)"
        )
    try:
        host = urlsplit(spec.location).hostname
    except ValueError:  # a malformed port or IPv6 literal
        host = None
    if not host:
        raise ValueError("the stream URL names no host")
    return spec


def classify_source(url: str, *, is_dir: bool = False) -> SourceSpec:
    """The kind of source `url` names. `is_dir`: whether the path is an existing folder.

    Raises ValueError naming what is accepted."""
    text = url.strip()
    if not text:
        raise ValueError("no source given")
    if text.startswith("dir:"):
        return SourceSpec(SourceKind.FOLDER, text[4:] or ".")
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif match := _SCHEME.match(text):
        kind = _SCHEMES.get(match.group(1).lower())
        if kind is None:
            raise ValueError(
                f"unsupported source {match.group(1)}://: use rtsp://, http(s)://, a video "
                "file, a camera device (/dev/video0 or an index) or a folder (dir:PATH or PATH/)"
            )
        return SourceSpec(kind, text)
    if _DEVICE.match(text):
        return SourceSpec(SourceKind.DEVICE, text)
    if text.endswith("/") or is_dir:
        return SourceSpec(SourceKind.FOLDER, text)
    return SourceSpec(SourceKind.VIDEO, text)
