"""Idle latency, upload → result: one image at a time through `POST /api/v1/analyze?wait=`, on the
demo's embedded broker (tansu) and on Apache Kafka 3.9, side by side in one run.

    python -m bench.idle_latency [--images 20] [--size 960x720]

Each stack gets its own MongoDB-wire server (secantusdb), one `mugpos worker` (the default, fused)
and one `mugpos api`, as child processes configured through MUGPOS_* like any deployment; the demo
stack keeps objects in a local folder and runs without Redis, as `mugpos demo` does; the Kafka stack
adds redis-server and moto S3. After a warm-up, each image is uploaded only once the previous result
came back, so nothing queues: the time is the path itself. Prints p50/p90/max of the client's
upload → 200 time and of the result's own stage timings.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from PIL import Image

from bench.services import real_services, settings_from_env
from control.console import mugpos_argv, worker_argv
from core.config import Settings, settings_env
from core.synth.render import scene_jpegs
from infra import mongo
from infra.launchers import ManagedProcess, SecantusServer, TansuBroker, free_port
from infra.provision import provision
from infra.users_store import UsersRepository

USER = "bench-admin"


def _jpegs(count: int, width: int, height: int) -> list[bytes]:
    out = []
    for data in scene_jpegs(880_000, count, max(width, height)):
        image = Image.open(io.BytesIO(data)).resize((width, height))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


@contextmanager
def _demo_stack(folder: Path) -> Iterator[dict[str, str]]:
    """tansu + secantusdb + a local object folder, no Redis: what `mugpos demo` runs."""
    with ExitStack() as stack:
        broker, database = TansuBroker(folder / "tansu"), SecantusServer(folder / "secantus")
        for server in (broker, database):
            stack.callback(server.stop)
            server.start()
        yield {
            "MUGPOS_KAFKA_BOOTSTRAP": broker.bootstrap,
            "MUGPOS_MONGODB_URI": database.uri,
            "MUGPOS_OBJECT_STORE": str(folder / "objects"),
            "MUGPOS_DEVICE": "cpu",
        }


async def _add_user(settings: Settings, password: str) -> None:
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        await UsersRepository(db, None).add_user(USER, password, "admin")
    finally:
        client.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def measure(env: dict[str, str], folder: Path, images: list[bytes]) -> dict[str, list[float]]:
    """Start a worker and the API on `env`'s services; upload each image and wait for its result."""
    base = {**env, "MUGPOS_TOPIC_PARTITIONS": "2", "MUGPOS_JWT_SECRET": secrets.token_urlsafe(48)}
    base["MUGPOS_MODEL_CACHE_DIR"] = str(folder / "models")
    settings = settings_from_env(base)
    asyncio.run(provision(settings))
    password = secrets.token_urlsafe(12)
    asyncio.run(_add_user(settings, password))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MUGPOS_")}
    child_env = inherited | settings_env(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = ManagedProcess(
        "worker", worker_argv(folder / "worker"), folder / "worker.log", cwd=folder, env=child_env
    )
    api = ManagedProcess(
        "api",
        mugpos_argv("api", "--port", str(port)),
        folder / "api.log",
        cwd=folder,
        env=child_env,
    )
    with ExitStack() as stack:
        stack.callback(worker.stop)
        worker.start(lambda: True, timeout_s=5)
        stack.callback(api.stop)
        api.start(lambda: _answers(f"{url}/health"), timeout_s=90)
        with httpx.Client(base_url=url, timeout=120) as client:
            login = client.post("/api/v1/auth/token", data={"username": USER, "password": password})
            login.raise_for_status()
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

            def upload(image: bytes) -> tuple[float, dict]:
                started = time.perf_counter()
                reply = client.post(
                    "/api/v1/analyze",
                    params={"wait": 30_000},
                    files={"image": ("scene.jpg", image, "image/jpeg")},
                )
                took = (time.perf_counter() - started) * 1000
                if reply.status_code != 200:
                    raise RuntimeError(f"upload answered {reply.status_code}: {reply.text[:200]}")
                return took, reply.json()

            for image in images[:3]:  # warm-up: the worker's first batch loads the model
                upload(image)
            found: dict[str, list[float]] = {"upload → result": [], "stages (result)": []}
            for image in images:
                took, result = upload(image)
                found["upload → result"].append(took)
                timings = result.get("timings_ms", {})
                stage = sum(v for k, v in timings.items() if k != "batch_size")
                found["stages (result)"].append(stage)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", default="960x720", help="uploaded JPEG size, WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    images = _jpegs(args.images, width, height)
    folder = Path(tempfile.mkdtemp(prefix="mugpos-latency-"))
    rows = []
    with _demo_stack(folder / "demo" / "services") as env:
        rows.append(("mugpos demo stack (tansu)", measure(env, folder / "demo", images)))
    with real_services(folder / "kafka" / "services") as env:
        rows.append(("Kafka 3.9 stack", measure(env, folder / "kafka", images)))
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}, {os.cpu_count()} CPUs; "
        f"{args.images} uploads of a {args.size} JPEG, one at a time, default model, fused worker"
    )
    print(f"{'stack':28} {'measure':18} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
    for name, found in rows:
        for label, values in found.items():
            ordered = sorted(values)
            p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
            print(
                f"{name:28} {label:18} {statistics.median(values):8.0f} {p90:8.0f} "
                f"{ordered[-1]:8.0f}"
            )


if __name__ == "__main__":
    main()
