"""A folder of pictures: those already there are sent once, oldest first, then new ones as they
appear. Polled (works on network shares and in containers, where inotify often does not).

A file is taken once it is complete: the same size and modification time at two polls in a row,
and, for JPEG and PNG, its end marker present (a writer that pauses longer than a poll would
otherwise have its half-written file sent). A file stable but still without its end marker for
INCOMPLETE_GRACE_S is sent anyway: the worker then rejects it as truncated, visibly."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
INCOMPLETE_GRACE_S = 10.0
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int
    stable_since_ns: int  # when this size and mtime were first seen


def looks_complete(path: Path, size: int) -> bool:
    """JPEG ends with FFD9 (some cameras pad a few bytes after it), PNG with its IEND chunk;
    other formats carry no end marker worth checking."""
    suffix = path.suffix.lower()
    if suffix not in {".jpg", ".jpeg", ".png"} or size < 16:
        return True
    with path.open("rb") as handle:
        handle.seek(max(0, size - 64))
        tail = handle.read()
    return _PNG_END in tail if suffix == ".png" else _JPEG_END in tail


class FolderWatcher:
    """`poll()` returns the files ready to send since the last poll, oldest first."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pending: dict[str, _Seen] = {}
        self._done: dict[str, int] = {}  # name -> mtime_ns when sent (a replaced file is new)
        self._warned: set[str] = set()

    def poll(self, now_ns: int) -> tuple[list[Path], list[Path]]:
        """(files ready to send, oldest first; videos and other skipped files, newly seen).
        Blocking (directory scan): run it in a thread."""
        ready: list[tuple[int, str, Path]] = []
        skipped: list[Path] = []
        present: set[str] = set()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not entry.is_file():
                    continue  # hidden: editors' and copy tools' temporary files
                suffix = os.path.splitext(name)[1].lower()
                if suffix in VIDEO_SUFFIXES:
                    if name not in self._warned:
                        self._warned.add(name)
                        skipped.append(Path(entry.path))
                    continue
                if suffix not in IMAGE_SUFFIXES:
                    continue  # `.part`, `.tmp`: still being written, renamed when done
                present.add(name)
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                if self._done.get(name) == info.st_mtime_ns:
                    continue
                seen = self._pending.get(name)
                if seen is None or (seen.size, seen.mtime_ns) != (info.st_size, info.st_mtime_ns):
                    self._pending[name] = _Seen(info.st_size, info.st_mtime_ns, now_ns)
                    continue
                path = Path(entry.path)
                if info.st_size == 0:
                    continue
                overdue = now_ns - seen.stable_since_ns >= INCOMPLETE_GRACE_S * 1e9
                try:
                    if not overdue and not looks_complete(path, info.st_size):
                        continue
                except OSError:  # removed or replaced since the scan: the next poll sees it
                    continue
                ready.append((info.st_mtime_ns, name, path))
        for name in list(self._pending):
            if name not in present:
                del self._pending[name]
        for name in list(self._done):
            if name not in present:
                del self._done[name]
        ready.sort()
        for mtime_ns, name, _ in ready:
            self._done[name] = mtime_ns
            del self._pending[name]
        return [path for _, _, path in ready], skipped
