"""MUGPOS_PRIVACY_BLUR=faces end to end: a real worker keeps blurred originals and says so in the
result; the API blurs a claim check before storing it. Faces: skimage's astronaut photo."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import cv2
import httpx
import numpy as np
import orjson
from PIL import Image
from skimage import data

from core.config import Settings
from core.synth.render import scene_jpegs
from infra.object_store import S3ObjectStore
from infra.object_store.keys import upload_key
from schemas.messages import IMAGE_REF_CONTENT_TYPE, AnalysisResult, DeadLetter, ImageRef
from schemas.topics import TopicNames
from tests.integration.api_server import api_settings, login, start_api
from tests.integration.kafka_io import by_request_id, collect, publish
from tests.integration.workers import WorkerProcess

FACE = (190, 85, 250, 160)  # x0, y0, x1, y1 of the astronaut's face at 512 px
FAR = (0, 330, 150, 512)  # the flag and the suit, far from it
REF = [("content-type", IMAGE_REF_CONTENT_TYPE.encode())]


def _encoded(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


def _difference(a: bytes, b: bytes, box: tuple[int, int, int, int], scale: int = 1) -> float:
    """Mean absolute difference of two encoded pictures inside `box` (at 512 px, times `scale`)."""
    x0, y0, x1, y1 = (v * scale for v in box)
    pa, pb = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), np.int16) for x in (a, b))
    assert pa.shape == pb.shape
    return float(np.abs(pa[y0:y1, x0:x1] - pb[y0:y1, x0:x1]).mean())


async def _objects(settings: Settings, puts: dict[str, bytes], gets: list[str]) -> list[bytes]:
    store = S3ObjectStore.from_settings(settings)
    try:
        for key, value in puts.items():
            await store.put(key, value)
        return [(await store.get(key)).data for key in gets]
    finally:
        await store.close()


async def test_the_worker_keeps_originals_with_faces_blurred(
    deployment: Settings, tmp_path: Path
) -> None:
    worker = WorkerProcess(deployment, tmp_path, "worker", {"MUGPOS_PRIVACY_BLUR": "faces"})
    try:
        face = _encoded(data.astronaut(), "JPEG", quality=92)
        face_png = _encoded(data.astronaut(), "PNG")
        (scene,) = scene_jpegs(1, 1, 480)  # no face in it
        # A claim check another client stored unblurred, and one an API stored already blurred.
        client_key = upload_key("cam-p", "client-ref", "png")
        api_key = upload_key("cam-p", "api-ref", "jpeg")
        await _objects(deployment, {client_key: face_png, api_key: scene}, [])
        blurred_ref = {"image_ref": api_key, "privacy": {"blurred": "faces", "regions": 1}}
        source = [("source-id", b"cam-p")]
        await publish(
            deployment,
            [
                ("face", face, source),
                ("no-face", scene, source),
                ("client-ref", orjson.dumps({"image_ref": client_key}), source + REF),
                ("api-ref", orjson.dumps(blurred_ref), source + REF),
                # Refused: the first is kept for replay (blurred), the second cannot be searched.
                ("bad-options", face, [*source, ("options", b"{nope")]),
                ("cut-short", face[: len(face) // 2], source),
            ],
        )
        ids = ["face", "no-face", "client-ref", "api-ref"]
        topics = TopicNames(deployment.topic_prefix)
        records = await collect(deployment, topics.results, ids, 60)
        refused = await collect(deployment, topics.dlq, ["bad-options", "cut-short"], 30)
    finally:
        worker.stop()
    grouped = by_request_id(records)
    results = {rid: AnalysisResult.model_validate_json(grouped[rid][0].value) for rid in ids}
    assert {r.status for r in results.values()} == {"ok"}
    keys = {rid: r.image.object_key for rid, r in results.items() if r.image}
    assert keys["client-ref"] == client_key  # replaced where it was, not copied
    stored = dict(zip(ids, await _objects(deployment, {}, [keys[i] for i in ids]), strict=True))

    privacy = results["face"].privacy
    assert privacy is not None
    assert privacy.blurred == "faces"
    assert privacy.regions >= 1
    assert stored["face"].startswith(b"\xff\xd8\xff")  # still a JPEG
    assert _difference(stored["face"], face, FACE) > 10
    assert _difference(stored["face"], face, FAR) < 2  # re-encoded at quality 95, not blurred

    assert results["client-ref"].privacy.regions >= 1
    assert stored["client-ref"].startswith(b"\x89PNG")
    assert _difference(stored["client-ref"], face_png, FACE) > 10
    assert _difference(stored["client-ref"], face_png, FAR) == 0

    assert results["no-face"].privacy.model_dump() == {"blurred": "faces", "regions": 0}
    assert stored["no-face"] == scene  # nothing found: kept as received
    # The API's claim check is reported as it says and not searched again.
    assert results["api-ref"].privacy.regions == 1
    assert stored["api-ref"] == scene

    letters = {r.request_id: DeadLetter.model_validate_json(r.value) for r in refused}
    assert letters["cut-short"].object_key is None
    (kept,) = await _objects(deployment, {}, [letters["bad-options"].object_key])
    assert _difference(kept, face, FACE) > 10


def test_the_api_blurs_a_claim_check_before_storing_it(deployment: Settings) -> None:
    api = start_api(api_settings(deployment, privacy_blur="faces"))
    try:
        big = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
        upload = _encoded(big, "PNG")  # over the inline limit: stored, sent by claim check
        reply = httpx.post(
            f"{api.url}/api/v1/analyze",
            headers=login(api, "analyst"),
            files={"image": ("astronaut.png", upload, "image/png")},
            timeout=60,
        )
    finally:
        api.stop()
    assert reply.status_code == 202, reply.text
    request_id, key = reply.json()["request_id"], reply.json()["object_key"]
    (stored,) = asyncio.run(_objects(deployment, {}, [key]))
    assert stored.startswith(b"\x89PNG")
    assert _difference(stored, upload, FACE, scale=2) > 10
    assert _difference(stored, upload, FAR, scale=2) == 0
    images = TopicNames(deployment.topic_prefix).uploads
    (message,) = asyncio.run(collect(deployment, images, [request_id], 30))
    ref = ImageRef.model_validate_json(message.value)
    assert ref.privacy is not None
    assert ref.privacy.regions >= 1
    assert ref.size_bytes == len(stored)
