"""API upload benchmark: latency of upload → stored → enqueued (the 202) and throughput, at
increasing client concurrency, then at a fixed arrival rate.

    python -m bench.api_load [--requests 400] [--concurrency 1,4,16,32] [--rate 200 --seconds 10]

Starts Kafka 3.9, secantusdb, redis-server and moto S3 on loopback, runs `mugpos api` as a child
process (one uvicorn worker), and uploads a small generated JPEG with httpx from this process. No
pipeline worker runs: this measures the API's own path. Client and server share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from bench.services import real_services, settings_from_env
from control.console import mugpos_argv
from core.synth.render import scene_jpegs
from infra import mongo
from infra.launchers import free_port
from infra.provision import provision
from infra.users_store import UsersRepository

PASSWORD = secrets.token_urlsafe(16)


async def add_user(env: dict[str, str]) -> None:
    settings = settings_from_env(env)
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        await UsersRepository(db, None).add_user("bench", PASSWORD, "analyst")
    finally:
        client.close()


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        mugpos_argv("api", "--port", str(port)),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"the API did not start; see {log}")


async def _upload(client: httpx.AsyncClient, image: bytes) -> float:
    started = time.perf_counter()
    reply = await client.post("/api/v1/analyze", files={"image": ("s.jpg", image, "image/jpeg")})
    if reply.status_code != 202:
        raise RuntimeError(f"upload answered {reply.status_code}: {reply.text[:200]}")
    return (time.perf_counter() - started) * 1000


async def closed_loop(client: httpx.AsyncClient, image: bytes, total: int, workers: int) -> dict:
    latencies: list[float] = []
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            latencies.append(await _upload(client, image))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return _row(f"{workers} concurrent", latencies, time.perf_counter() - started)


async def open_loop(client: httpx.AsyncClient, image: bytes, rate: float, seconds: float) -> dict:
    """Requests arrive on a fixed schedule, whether or not earlier ones have finished."""
    latencies: list[float] = []
    tasks = []
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(_upload(client, image)))
    latencies = list(await asyncio.gather(*tasks))
    return _row(f"{rate:g} req/s offered", latencies, time.perf_counter() - started)


def _row(name: str, latencies: list[float], elapsed: float) -> dict:
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {
        "load": name,
        "n": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": p50,
        "p95": p95,
        "p99": p99,
    }


async def measure(url: str, args: argparse.Namespace) -> list[dict]:
    image = scene_jpegs(880_000, 1, args.size)[0]
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=256, keepalive_expiry=2)
    ) as client:
        token = (
            await client.post(
                "/api/v1/auth/token", data={"username": "bench", "password": PASSWORD}
            )
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        await closed_loop(client, image, 50, 4)  # warm-up: connections, producer metadata
        rows = []
        for concurrency in args.concurrency.split(","):
            rows.append(await closed_loop(client, image, args.requests, int(concurrency)))
            print(f"measured {rows[-1]['load']}: p99 {rows[-1]['p99']:.1f} ms", flush=True)
        rows.append(await open_loop(client, image, args.rate, args.seconds))
    return rows, len(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--size", type=int, default=320, help="side of the uploaded JPEG")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mugpos-api-bench-"))
    with real_services(folder) as service_env:
        env = {
            **os.environ,
            **service_env,
            "MUGPOS_TOPIC_PREFIX": "apibench",
            "MUGPOS_MONGODB_DB": "apibench",
            "MUGPOS_S3_BUCKET": "apibench",
            "MUGPOS_JWT_SECRET": secrets.token_urlsafe(32),
            "MUGPOS_RATE_LIMIT": "1000000/minute",
            "MUGPOS_RATE_LIMIT_IP": "1000000/minute",
            "MUGPOS_LOG_LEVEL": "WARNING",
        }
        asyncio.run(provision(settings_from_env(env)))
        asyncio.run(add_user(env))
        port = free_port()
        api = start_api(env, port, folder / "api.log")
        try:
            rows, size = asyncio.run(measure(f"http://127.0.0.1:{port}", args))
        finally:
            api.terminate()
            api.wait(timeout=30)
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores), "
        f"upload of a {size / 1024:.0f} KiB JPEG -> 202 (stored in S3, placeholder in MongoDB, "
        f"claim check on Kafka), one API process"
    )
    print(f"{'load':<20} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for r in rows:
        print(
            f"{r['load']:<20} {r['n']:>8} {r['rps']:>7.1f} {r['p50']:>7.1f} {r['p95']:>7.1f} {r['p99']:>7.1f}"
        )


if __name__ == "__main__":
    main()
