"""Upload → checked up front → on the uploads topic (acks=all) → 202. Anything refused here is
answered with a 4xx and nothing is stored or enqueued.

The request waits for one thing only: the broker's acknowledgement. An image up to
INLINE_MAX_BYTES travels inside the Kafka message, like any Kafka client's, and the worker keeps
the original (agents.stages.preprocess); a larger one goes to the object store first and travels
as a claim check. The bookkeeping around an accepted upload — the `pending` state
(ResultStore.mark_pending) and the audit entry — is written in batches off the request path."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from api.problems import Problem
from api.services import ApiServices
from core.config import Settings
from core.imaging import ImageRejected, probe_image
from core.imaging.decode import CONTENT_TYPES, EMPTY, TOO_LARGE, TOO_MANY_PIXELS
from core.imaging.privacy import blur_original
from core.pipeline.intake import IntakeError, parse_headers
from infra import tracing
from infra.object_store.keys import upload_key
from schemas.messages import IMAGE_REF_CONTENT_TYPE, ImageRef, PrivacyOut
from schemas.topics import INLINE_MAX_BYTES, partition_key

_STATUS_BY_REASON = {EMPTY: 400, TOO_LARGE: 413, TOO_MANY_PIXELS: 413}
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: str
    source_id: str
    object_key: str | None  # None: inline; the worker keeps the original (result's image)
    format: str
    width: int
    height: int
    size_bytes: int


def check_options(raw: str | None) -> dict[str, object]:
    if not raw:
        return {}
    try:
        return parse_headers([("options", raw.encode())]).options
    except IntakeError as exc:
        raise Problem(422, str(exc), code=exc.reason) from None


def check_image(
    svc: ApiServices, data: bytes, declared_type: str | None, filename: str
) -> tuple[str, int, int]:
    """(format, width, height), or a Problem naming what is wrong with the file."""
    try:
        kind, width, height = probe_image(data, svc.limits)
    except ImageRejected as exc:
        status = _STATUS_BY_REASON.get(exc.reason, 415 if "format" in exc.reason else 422)
        raise Problem(status, f"{filename}: {exc}", code=exc.reason) from None
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in _GENERIC_TYPES and declared != CONTENT_TYPES[kind]:
        raise Problem(
            415,
            f"{filename}: declared as {declared} but the bytes are {kind.upper()}",
            code="content_type_mismatch",
        )
    return kind, width, height


async def enqueue(
    svc: ApiServices,
    data: bytes,
    kind: str,
    size: tuple[int, int],
    source_id: str,
    options: dict[str, object],
) -> Accepted:
    """On the image topic, acknowledged by the broker (acks=all), then marked pending. Raises
    (nothing marked) when the image could not be stored or enqueued."""
    request_id = f"r-{uuid.uuid4().hex}"
    tracing.annotate(request_id=request_id, source_id=source_id)  # on the request's span
    now = datetime.now(UTC)
    content_type = CONTENT_TYPES[kind]
    key: str | None = None
    if len(data) <= INLINE_MAX_BYTES:
        value = data
    else:
        key = upload_key(source_id, request_id, kind, now)
        stored, privacy = data, None
        if svc.settings.privacy_blur == "faces":
            stored, privacy = await _blurred(svc, data)
        await svc.store.put(
            key, stored, content_type=content_type, metadata={"request-id": request_id}
        )
        ref = ImageRef(
            image_ref=key, content_type=content_type, size_bytes=len(stored), privacy=privacy
        )
        # Without `privacy: null`: a worker of an earlier release refuses fields it does not know.
        value = ref.model_dump_json(exclude_none=True).encode()
        content_type = IMAGE_REF_CONTENT_TYPE
    headers = [
        ("request-id", request_id.encode()),
        ("source-id", source_id.encode()),
        ("content-type", content_type.encode()),
        ("submitted-at", now.isoformat().encode()),
    ]
    if options:
        headers.append(("options", orjson.dumps(options)))
    # The aiokafka instrumentation adds `traceparent`: this request's span is the image's parent.
    await svc.producer.send_and_wait(
        svc.topics.uploads, value, key=partition_key(source_id, request_id), headers=headers
    )
    await svc.results.mark_pending(request_id, source_id, now)
    svc.metrics.analysis_requests.labels("accepted").inc()
    return Accepted(request_id, source_id, key, kind, size[0], size[1], len(data))


async def _blurred(svc: ApiServices, data: bytes) -> tuple[bytes, PrivacyOut]:
    """The upload with its faces blurred, before anything is stored: this object is the original
    the worker keeps (it reads `privacy` from the claim check and does not look again). A picture
    that cannot be decoded to look for faces is refused, never stored."""
    try:
        concealed = await asyncio.to_thread(blur_original, data, svc.limits)
    except ImageRejected as exc:
        raise Problem(_STATUS_BY_REASON.get(exc.reason, 422), str(exc), code=exc.reason) from None
    return concealed.data, PrivacyOut(blurred="faces", regions=concealed.regions)


# One file of a batch: name, its bytes or why it was refused before being looked at, declared type.
BatchFile = tuple[str, bytes | Problem, str | None]

_CHUNK = 64 * 1024
_INFLATABLE = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}  # the others inflate without a bound
_ENCRYPTED = 0x1 | 0x40  # traditional and strong encryption flag bits
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_MEMBER_SIGNATURE = b"PK\x01\x02"  # starts each member's record in the central directory
_MEMBERS_PER_ITEM = 4  # room for the folders zip tools list beside the files


class _Budget:
    """One batch's allowance: as many images, and as many bytes once inflated, as a request of
    plain files could carry. Past it the whole batch is refused (413)."""

    def __init__(self, settings: Settings) -> None:
        self.max_items = settings.api_max_batch_items
        self.max_bytes = settings.api_max_request_bytes
        self.items = self.bytes = 0

    def add_items(self, count: int) -> None:
        self.items += count
        if self.items > self.max_items:
            raise Problem(
                413, f"a batch holds at most {self.max_items} images", code="batch_too_large"
            )

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.max_bytes:
            raise Problem(
                413, f"the batch inflates to over {self.max_bytes} bytes", code="batch_too_large"
            )


def expand_batch(
    uploads: list[tuple[str, bytes, str | None]], settings: Settings
) -> list[BatchFile]:
    """The batch's files, zips expanded. Blocking (inflating is CPU work): run it in a thread.

    Nothing a zip declares is trusted: each entry is inflated in chunks through a byte counter
    that stops one byte past the image limit, and every byte inflated, refused entries' included,
    counts against the batch's budget."""
    limit, budget = settings.max_image_bytes, _Budget(settings)
    files: list[BatchFile] = []
    for name, data, declared in uploads:
        if zipfile.is_zipfile(io.BytesIO(data)):
            files.extend(_unzip(name, data, limit, budget))
            continue
        budget.add_items(1)
        budget.add_bytes(len(data))
        if len(data) > limit:
            files.append(
                (name, Problem(413, f"{name}: over {limit} bytes", code="too_large"), None)
            )
        else:
            files.append((name, data, declared))
    return files


def _unzip(name: str, data: bytes, limit: int, budget: _Budget) -> list[BatchFile]:
    # zipfile spends ~25 µs parsing each member it lists, so a body of nothing but member records
    # (a million in 64 MiB) would cost half a minute: count them first, at memory speed.
    if data.count(_MEMBER_SIGNATURE) > _MEMBERS_PER_ITEM * budget.max_items:
        raise Problem(413, f"{name}: lists too many members", code="batch_too_large")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError):
        raise Problem(422, f"{name}: not a readable zip archive", code="bad_zip") from None
    with archive:
        # Not ZipInfo.is_dir(): it fails on an empty name.
        entries = [e for e in archive.infolist() if not e.filename.endswith("/")]
        budget.add_items(len(entries))  # before inflating anything
        return [(e.filename, _inflate(archive, e, limit, budget), None) for e in entries]


def _inflate(
    archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limit: int, budget: _Budget
) -> bytes | Problem:
    """The entry's bytes, or why not."""
    where = entry.filename
    if entry.flag_bits & _ENCRYPTED:
        return Problem(415, f"{where}: encrypted zip entries are not read", code="encrypted_entry")
    if entry.compress_type not in _INFLATABLE:
        return Problem(
            415,
            f"{where}: zip entries must be stored or deflated",
            code="unsupported_compression",
        )
    data = bytearray()
    try:
        with archive.open(entry) as stream:
            while chunk := stream.read(min(_CHUNK, limit + 1 - len(data))):
                budget.add_bytes(len(chunk))
                data += chunk
                if len(data) > limit:
                    return Problem(
                        413, f"{where}: inflates to over {limit} bytes", code="too_large"
                    )
    except NotImplementedError:
        return Problem(
            415, f"{where}: uses an unsupported zip feature", code="unsupported_compression"
        )
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError):
        return Problem(422, f"{where}: damaged zip entry", code="bad_zip_entry")
    if bytes(data[:4]) in _ZIP_MAGIC:
        return Problem(415, f"{where}: zips inside a zip are not expanded", code="nested_zip")
    return bytes(data)
