"""What an ingest URL names: a video file, a live stream (RTSP, HTTP/MJPEG), a local camera
device, or a folder to watch. Decided from the text alone (plus whether the path is a folder),
so a typo is reported before anything is opened."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class SourceKind(StrEnum):
    VIDEO = "video"  # a file, sampled on its own timeline; the command ends with it
    RTSP = "rtsp"
    HTTP = "http"  # MJPEG or any stream FFmpeg reads over HTTP(S)
    DEVICE = "device"  # /dev/videoN or a camera index
    FOLDER = "folder"  # image files, those there and those still to come


LIVE_KINDS = frozenset({SourceKind.RTSP, SourceKind.HTTP, SourceKind.DEVICE})
_SCHEMES = {
    "rtsp": SourceKind.RTSP,
    "rtsps": SourceKind.RTSP,
    "http": SourceKind.HTTP,
    "https": SourceKind.HTTP,
}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_DEVICE = re.compile(r"^(/dev/video\d+|\d+)$")


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
        return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", self.location)


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
