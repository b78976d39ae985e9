"""API upload benchmark: latency of upload → 202 (durable in Kafka) and throughput, at increasing
client concurrency, then at a fixed arrival rate.

    python -m bench.api_load [--requests 400] [--concurrency 1,4,16,32] [--rate 200 --seconds 10]
                             [--workers 1,2] [--size 320] [--baseline DIR] [--with-path DIR]
                             [--rounds N]

Starts Kafka 3.9, secantusdb, redis-server and moto S3 on loopback, runs `mugpos api` as a child
process (`--workers N` uvicorn processes; several values measure each in turn) and uploads a
generated JPEG from this process. No pipeline worker runs: this measures the API's own path.
Client, server and services share the machine; the table says how much CPU the client used.

`--baseline DIR` measures another source tree of the project (e.g. the last commit, unpacked with
`git archive HEAD | tar -x -C DIR`) against the same services in the same run, one API at a time,
so before/after figures come from one machine under the same conditions. Errors (any answer other
than 202, or no answer within 30 s) are counted, never raised, and excluded from the latencies.

The load comes from a bare HTTP/1.1 keep-alive client (one pre-encoded multipart request, at most
64 connections), far cheaper per request than httpx, whose pool also slows down with hundreds
of requests waiting in it (earlier open-loop figures were partly the client's). Open-loop
latency is counted from each request's scheduled time, so a late client cannot hide queueing.
After the table, the CPU each process spent per upload in the open-loop runs, and the cores the
machine's other users took meanwhile (on a shared box they compete for the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil

from bench.services import real_services, settings_from_env
from core.synth.render import scene_jpegs
from infra import mongo
from infra.launchers import free_port
from infra.provision import provision
from infra.users_store import UsersRepository

PASSWORD = secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Target:
    """One API build to measure: a source tree and a number of uvicorn worker processes."""

    name: str
    source: Path | None  # None: this checkout
    workers: int
    extra_path: str | None = None  # first on the API's PYTHONPATH (optional packages)

    def argv(self, port: int) -> list[str]:
        argv = [sys.executable, "-m", "control.cli", "api", "--port", str(port)]
        return argv if self.workers == 1 else [*argv, "--workers", str(self.workers)]


async def add_user(env: dict[str, str]) -> None:
    settings = settings_from_env(env)
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        await UsersRepository(db, None).add_user("bench", PASSWORD, "analyst")
    finally:
        client.close()


def start_api(target: Target, env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    if target.source is not None:  # its own tree first on the path, ahead of this checkout
        env = {**env, "PYTHONPATH": str(target.source)}
    if target.extra_path is not None:
        env = {**env, "PYTHONPATH": target.extra_path}
    process = subprocess.Popen(
        target.argv(port),
        env=env,
        cwd=target.source or Path.cwd(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
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


class Tally:
    """Latencies of the 202s and a count of everything else, by kind."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Uploader:
    """Sends one pre-encoded upload over pooled keep-alive connections."""

    BOUNDARY = "mugposbenchboundary"

    def __init__(self, port: int, token: str, image: bytes, connections: int = 64) -> None:
        body = (
            f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="s.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + image
            + f"\r\n--{self.BOUNDARY}--\r\n".encode()
        )
        head = (
            f"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={self.BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._request = head.encode() + body
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(connections)

    async def upload(self, tally: Tally, started: float) -> None:
        """One upload; its latency from `started` (perf_counter) when answered 202."""
        async with self._slots:
            try:
                status = await asyncio.wait_for(self._exchange(), 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                tally.error(type(exc).__name__)
                return
        if status != 202:
            tally.error(str(status))
            return
        tally.latencies.append((time.perf_counter() - started) * 1000)

    async def _exchange(self) -> int:
        if self._idle:  # the server may have closed it meanwhile (keep-alive timeout): retry once
            try:
                return await self._send(*self._idle.pop())
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if getattr(exc, "partial", b""):
                    raise
        return await self._send(*await asyncio.open_connection("127.0.0.1", self._port))

    async def _send(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        try:
            writer.write(self._request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
            await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        return int(lines[0].split()[1])

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


class CpuMeter:
    """CPU seconds used by each process group over a run, and by the rest of the machine (other
    users of a shared box): says where an upload's time goes, and how much machine was left."""

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _used(self, processes: list[psutil.Process]) -> float:
        total = 0.0
        for process in processes:
            try:
                t = process.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        return total

    def read(self) -> dict[str, float]:
        return {"machine": self._busy()} | {k: self._used(v) for k, v in self.groups.items()}

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        used = {k: after[k] - before[k] for k in before}
        used["others"] = used.pop("machine") - sum(used.values())
        return used


def service_processes(service_env: dict[str, str]) -> dict[str, list[psutil.Process]]:
    """The process listening on each service's port."""
    ports = {
        "kafka": int(service_env["MUGPOS_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]),
        "mongodb": urlsplit(service_env["MUGPOS_MONGODB_URI"]).port,
        "redis": urlsplit(service_env["MUGPOS_REDIS_URL"]).port,
        "s3": urlsplit(service_env["MUGPOS_S3_ENDPOINT_URL"]).port,
    }
    listening = {
        c.laddr.port: c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.pid
    }
    return {name: [psutil.Process(listening[port])] for name, port in ports.items()}


async def closed_loop(uploader: Uploader, total: int, workers: int) -> dict:
    tally = Tally()
    remaining = iter(range(total))
    cpu = time.process_time()

    async def worker() -> None:
        for _ in remaining:
            await uploader.upload(tally, time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return _row(f"{workers} concurrent", tally, time.perf_counter() - started, cpu)


async def open_loop(uploader: Uploader, rate: float, seconds: float, meter: CpuMeter) -> dict:
    """Requests arrive on a fixed schedule, whether or not earlier ones have finished."""
    tally = Tally()
    tasks = []
    cpu = time.process_time()
    used = meter.read()
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(uploader.upload(tally, due)))
    await asyncio.gather(*tasks)
    row = _row(f"{rate:g} req/s offered", tally, time.perf_counter() - started, cpu)
    return row | {"cpu": CpuMeter.delta(used, meter.read())}


def _row(name: str, tally: Tally, elapsed: float, cpu_started: float) -> dict:
    p50, p95, p99 = np.percentile(tally.latencies, [50, 95, 99]) if tally.latencies else [0] * 3
    return {
        "load": name,
        "n": len(tally.latencies) + sum(tally.errors.values()),
        "rps": len(tally.latencies) / elapsed,
        "elapsed": elapsed,
        "errors": tally.errors,
        "client_cpu": (time.process_time() - cpu_started) / elapsed,
        "p50": p50,
        "p95": p95,
        "p99": p99,
    }


async def measure(port: int, image: bytes, args: argparse.Namespace, meter: CpuMeter) -> list[dict]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        token = (
            await client.post(
                "/api/v1/auth/token", data={"username": "bench", "password": PASSWORD}
            )
        ).json()["access_token"]
    uploader = Uploader(port, token, image)
    try:
        await closed_loop(uploader, 200, 8)  # warm-up: connections, producer metadata
        rows = []
        for concurrency in filter(None, args.concurrency.split(",")):
            rows.append(await closed_loop(uploader, args.requests, int(concurrency)))
            print(f"  {rows[-1]['load']}: p99 {rows[-1]['p99']:.1f} ms", flush=True)
        if args.rate > 0:
            await asyncio.sleep(2)  # let the closed-loop runs' backlog (flushes, GC) settle
            rows.append(await open_loop(uploader, args.rate, args.seconds, meter))
            print(f"  {rows[-1]['load']}: p99 {rows[-1]['p99']:.1f} ms", flush=True)
    finally:
        uploader.close()
    return rows


def _targets(args: argparse.Namespace) -> list[Target]:
    targets = []
    if args.baseline:
        targets.append(Target("baseline", Path(args.baseline).resolve(), 1))
    targets += [Target("this tree", None, int(n)) for n in args.workers.split(",")]
    if args.with_path:
        targets += [
            Target("this tree+", None, int(n), args.with_path) for n in args.workers.split(",")
        ]
    return targets * args.rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", default="1,4,16,32", help="'' for none")
    parser.add_argument("--rate", type=float, default=200, help="0 skips the open-loop run")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--size", type=int, default=320, help="side of the uploaded JPEG")
    parser.add_argument("--workers", default="1", help="uvicorn processes, e.g. 1,2")
    parser.add_argument("--baseline", help="another source tree of the project to measure first")
    parser.add_argument("--rounds", type=int, default=1, help="measure every API this often")
    parser.add_argument(
        "--with-path",
        help="also measure this tree with DIR first on its PYTHONPATH ('this tree+'), e.g. "
        "`pip install --target DIR httptools uvloop`, which uvicorn uses when importable",
    )
    args = parser.parse_args()
    image = scene_jpegs(880_000, 1, args.size)[0]
    folder = Path(tempfile.mkdtemp(prefix="mugpos-api-bench-"))
    results: list[tuple[Target, list[dict]]] = []
    with real_services(folder) as service_env:
        services = service_processes(service_env)
        for index, target in enumerate(_targets(args)):
            name = f"apibench{index}"
            env = {
                **os.environ,
                **service_env,
                "MUGPOS_TOPIC_PREFIX": name,
                "MUGPOS_MONGODB_DB": name,
                "MUGPOS_S3_BUCKET": name,
                "MUGPOS_JWT_SECRET": secrets.token_urlsafe(32),
                "MUGPOS_RATE_LIMIT": "1000000/minute",
                "MUGPOS_RATE_LIMIT_IP": "1000000/minute",
                "MUGPOS_LOG_LEVEL": "WARNING",
            }
            asyncio.run(provision(settings_from_env(env)))
            asyncio.run(add_user(env))
            port = free_port()
            print(f"{target.name}, {target.workers} API process(es):", flush=True)
            api = start_api(target, env, port, folder / f"api-{index}.log")
            try:
                processes = psutil.Process(api.pid)
                meter = CpuMeter(
                    {"API": [processes, *processes.children(recursive=True)]}
                    | services
                    | {"client": [psutil.Process()]}
                )
                results.append((target, asyncio.run(measure(port, image, args, meter))))
            finally:
                api.terminate()
                api.wait(timeout=30)
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores), "
        f"upload of a {len(image) / 1024:.0f} KiB {args.size} px JPEG -> 202; logs in {folder}"
    )
    print(
        f"{'API':<12} {'procs':>5} {'load':<20} {'requests':>8} {'errors':>6} {'req/s':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'client CPU':>10}"
    )
    for target, rows in results:
        for r in rows:
            errors = sum(r["errors"].values())
            print(
                f"{target.name:<12} {target.workers:>5} {r['load']:<20} {r['n']:>8} {errors:>6} "
                f"{r['rps']:>7.1f} {r['p50']:>7.1f} {r['p95']:>7.1f} {r['p99']:>7.1f} "
                f"{r['client_cpu']:>9.0%}" + (f"  {r['errors']}" if errors else "")
            )
    _print_cpu(results)


def _print_cpu(results: list[tuple[Target, list[dict]]]) -> None:
    """Where the time went in each open-loop run: CPU ms per answered upload by process, and
    the cores the machine's other users took meanwhile."""
    rows = [(t, r) for t, rs in results for r in rs if "cpu" in r]
    if not rows:
        return
    names = [k for k in rows[0][1]["cpu"] if k != "others"]
    print("\nCPU per upload in the open-loop runs (ms), and cores used by other processes:")
    print(f"{'API':<12} {'procs':>5} " + " ".join(f"{n:>8}" for n in names) + f" {'others':>8}")
    for target, r in rows:
        answered = max(1, r["n"] - sum(r["errors"].values()))
        per = " ".join(f"{r['cpu'][n] * 1000 / answered:>8.2f}" for n in names)
        others = r["cpu"]["others"] / r["elapsed"]
        print(f"{target.name:<12} {target.workers:>5} {per} {others:>7.2f}c")


if __name__ == "__main__":
    main()
