"""The bucket's key layout, one function per kind of object (mirrors the original R2 layout)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from infra.object_store.base import validate_key

_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._-]+")
ORIGINALS_PREFIX = "user-uploads/"
RESULTS_PREFIX = "analysis-results/"


def _segment(value: str) -> str:
    """A user-supplied id made safe as one key segment."""
    cleaned = _SAFE_SEGMENT.sub("_", value).strip("._") or "unknown"
    return cleaned[:128]


def upload_key(
    source_id: str, request_id: str, extension: str, when: datetime | None = None
) -> str:
    """`user-uploads/{source}/{YYYY-MM-DD}/{request_id}.{ext}`: an original image as received."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    ext = _segment(extension.lower().lstrip(".")) or "bin"
    return validate_key(
        f"{ORIGINALS_PREFIX}{_segment(source_id)}/{when:%Y-%m-%d}/{_segment(request_id)}.{ext}"
    )


def result_key(request_id: str, name: str, when: datetime | None = None) -> str:
    """`analysis-results/{YYYY}/{MM}/{DD}/{request_id}/{name}`: e.g. result.json, annotated.jpg."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return validate_key(f"{RESULTS_PREFIX}{when:%Y/%m/%d}/{_segment(request_id)}/{_segment(name)}")


def model_prefix(name: str, version: str) -> str:
    """`models/{name}/{version}/`: every file of one model version."""
    return f"models/{_segment(name)}/{_segment(version)}/"


def model_key(name: str, version: str, filename: str) -> str:
    return validate_key(model_prefix(name, version) + _segment(filename))
