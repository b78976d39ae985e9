"""`mugpos ingest` as a child process against the real Kafka 3.9 broker (and, for the video, a
real worker): a generated video sampled on its own timeline, a watched folder filling up, and
live streams (RTSP through a real RTSP server, HTTP MJPEG) that drop and come back."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from control.console import mugpos_argv
from core.config import Settings, settings_env
from core.synth.render import render_scene
from core.synth.scene import sample_scene
from infra.launchers import free_port
from schemas.topics import TopicNames
from tests.integration.kafka_io import Record, collect, eventually, read_to_end, results

SIZE = 256
FPS = 10


def _scene(seed: int) -> np.ndarray:
    image, _ = render_scene(sample_scene(700_000 + seed, SIZE), SIZE)
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)


def write_video(path: Path, scene_per_second: list[int]) -> Path:
    """An MP4 (mp4v) at 10 fps showing scene `scene_per_second[s]` during second s."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (SIZE, SIZE))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    scenes = {seed: _scene(seed) for seed in set(scene_per_second)}
    for seed in scene_per_second:
        for _ in range(FPS):
            writer.write(scenes[seed])
    writer.release()
    return path


def headers(record: Record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def captured(record: Record) -> datetime:
    return datetime.fromisoformat(headers(record)["captured-at"])


class Ingest:
    """One `mugpos ingest` child process; stderr (status lines, summary) kept in a file."""

    def __init__(self, settings: Settings, folder: Path, *args: str) -> None:
        self.log_path = folder / f"ingest-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, **settings_env(settings), "COLUMNS": "200"}
        self.process = subprocess.Popen(
            mugpos_argv("ingest", *args),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self._log.flush()

    def stop(self, timeout_s: float = 40) -> int:
        """SIGTERM, as an operator or systemd would, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def ingests() -> Iterator[list[Ingest]]:
    """Every ingest process a test starts is gone after it, whatever happened; its output is
    printed (pytest shows it for a failing test)."""
    started: list[Ingest] = []
    yield started
    for ingest in started:
        ingest.kill()
        print(f"--- {ingest.log_path.name} ---\n{ingest.output()[-4000:]}")


async def images(settings: Settings, count: int, timeout_s: float) -> list[Record]:
    """The images topic once it holds at least `count` records, in order per partition."""
    topic = TopicNames(settings.topic_prefix).images

    async def enough() -> list[Record] | None:
        records = await read_to_end(settings, topic)
        return records if len(records) >= count else None

    found = await eventually(enough, timeout_s, f"{count} images on {topic}", every_s=0.5)
    return sorted(found, key=lambda r: (r.partition, r.offset))


def summary(output: str) -> re.Match[str]:
    found = re.search(
        r"ingest (\S+) (ended|stopped): sent (\d+), acknowledged (\d+), unchanged (\d+), "
        r"dropped (\d+), reconnects (\d+)",
        output,
    )
    assert found, f"no summary line in:\n{output[-3000:]}"
    return found


# --- a video file ----------------------------------------------------------------------------


async def test_a_video_is_sampled_on_its_own_timeline_into_results(
    pipeline: Settings, tmp_path: Path, ingests: list[Ingest]
) -> None:
    """10 s at 10 fps, a new scene every second, every 2 s of video: the frames at 0, 2, 4, 6
    and 8 s (core.ingest.schedule), analysed by a real worker."""
    video = write_video(tmp_path / "desk.mp4", list(range(10)))
    ingest = Ingest(pipeline, tmp_path, str(video), "--source-id", "cam-video", "--every", "2s")
    ingests.append(ingest)
    assert await asyncio.to_thread(ingest.wait, 60) == 0, ingest.output()
    found = summary(ingest.output())
    assert found.group(2, 3, 4) == ("ended", "5", "5")

    sent = await read_to_end(pipeline, TopicNames(pipeline.topic_prefix).images)
    assert len(sent) == 5
    assert {r.partition for r in sent} == {sent[0].partition}  # one key: one partition, in order
    sent.sort(key=lambda r: r.offset)
    for record in sent:
        meta = headers(record)
        assert meta["source-id"] == "cam-video"
        assert meta["content-type"] == "image/jpeg"
        assert meta["request-id"].startswith("cam-video-")
        assert record.value[:2] == b"\xff\xd8"
    times = [captured(r) for r in sent]
    assert [t - times[0] for t in times] == [timedelta(seconds=2 * i) for i in range(5)]

    ids = [r.request_id for r in sent]
    answers = results(await collect(pipeline, TopicNames(pipeline.topic_prefix).results, ids, 180))
    assert set(answers) == set(ids)
    for result, *_ in answers.values():
        assert result.status == "ok", result
        assert result.source_id == "cam-video"
        assert result.captured_at is not None
    assert sorted(answers[r.request_id][0].captured_at for r in sent) == times


async def test_on_change_skips_frames_that_show_nothing_new(
    deployment: Settings, tmp_path: Path, ingests: list[Ingest]
) -> None:
    """Scene A for 4 s, B for 2 s, C for 4 s, sampled every second: 10 samples, 3 sent (at 0, 4
    and 6 s), 7 unchanged. MPEG-4 compression differs from frame to frame; it is no change."""
    video = write_video(tmp_path / "still.mp4", [1] * 4 + [2] * 2 + [3] * 4)
    ingest = Ingest(
        deployment, tmp_path, str(video), "--source-id", "cam-still", "--every", "1s", "--on-change"
    )
    ingests.append(ingest)
    assert await asyncio.to_thread(ingest.wait, 60) == 0, ingest.output()
    found = summary(ingest.output())
    assert found.group(3, 4, 5) == ("3", "3", "7")
    sent = await read_to_end(deployment, TopicNames(deployment.topic_prefix).images)
    times = sorted(captured(r) for r in sent)
    assert [t - times[0] for t in times] == [timedelta(seconds=s) for s in (0, 4, 6)]


# --- a watched folder ------------------------------------------------------------------------


def _jpeg(seed: int) -> bytes:
    return cv2.imencode(".jpg", _scene(seed), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def _png(seed: int) -> bytes:
    return cv2.imencode(".png", _scene(seed))[1].tobytes()


async def test_a_watched_folder_sends_each_complete_image_once(
    deployment: Settings, tmp_path: Path, ingests: list[Ingest]
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    files: dict[str, bytes] = {"b-older.png": _png(1), "a-newer.jpg": _jpeg(2)}
    (drop / "b-older.png").write_bytes(files["b-older.png"])
    (drop / "a-newer.jpg").write_bytes(files["a-newer.jpg"])
    now = time.time()
    os.utime(drop / "b-older.png", (now - 60, now - 60))  # oldest first, whatever the names
    (drop / "clip.mp4").write_bytes(b"\0" * 100)  # videos are skipped, with a warning
    ingest = Ingest(
        deployment,
        tmp_path,
        f"dir:{drop}",
        "--source-id",
        "cam-folder",
        "--poll",
        "200ms",
        "--status-every",
        "1s",
    )
    ingests.append(ingest)
    first = await images(deployment, 2, 30)
    assert [headers(r)["content-type"] for r in first] == ["image/png", "image/jpeg"]

    # Written elsewhere under a temporary name, then renamed in (as rsync and most tools do).
    files["c-renamed.jpg"] = _jpeg(3)
    (drop / ".c-renamed.jpg.tmp").write_bytes(files["c-renamed.jpg"])
    (drop / ".c-renamed.jpg.tmp").rename(drop / "c-renamed.jpg")
    # Written slowly: half, a pause of several polls, the rest. Only the whole file is sent.
    files["d-slow.jpg"] = _jpeg(4)
    with (drop / "d-slow.jpg").open("wb") as handle:
        handle.write(files["d-slow.jpg"][:2000])
        handle.flush()
        await asyncio.sleep(1.5)  # the writer stalls; the watcher polls 7 times meanwhile
        handle.write(files["d-slow.jpg"][2000:])
    files["e-plain.png"] = _png(5)
    (drop / "e-plain.png").write_bytes(files["e-plain.png"])

    found = await images(deployment, 5, 30)
    assert await asyncio.to_thread(ingest.stop) == 0, ingest.output()
    assert len(await read_to_end(deployment, TopicNames(deployment.topic_prefix).images)) == 5
    by_value = {record.value: record for record in found}
    assert set(by_value) == set(files.values())  # each file once, bytes unchanged
    for name, data in files.items():
        record = by_value[data]
        meta = headers(record)
        assert record.value == data
        assert meta["source-id"] == "cam-folder"
        assert meta["content-type"] == ("image/png" if name.endswith(".png") else "image/jpeg")
        mtime = datetime.fromtimestamp((drop / name).stat().st_mtime, UTC)
        assert abs(captured(record) - mtime) < timedelta(milliseconds=1)
    assert len({headers(r)["request-id"] for r in found}) == 5
    assert {r.partition for r in found} == {found[0].partition}

    output = ingest.output()
    assert "clip.mp4: videos in a watched folder are not read" in output
    assert re.search(r"ingest: cam-folder \[watching\] .* sent \d+", output)
    found_summary = summary(output)
    assert found_summary.group(2, 3, 4) == ("stopped", "5", "5")


# --- live streams ----------------------------------------------------------------------------


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _need(program: str) -> str:
    path = shutil.which(program)
    assert path, f"{program} is not installed: run `make system-deps`"
    return path


class RtspCamera:
    """A real RTSP server (rtsp-server-perl, Debian's RTSP::Server relay) fed by ffmpeg, which
    plays a video in a loop at its own pace: what an IP camera looks like to a client.

    ffmpeg cannot serve RTSP clients itself (its `-rtsp_flags listen` is an input option: it
    receives a stream, it does not serve one), hence the relay. The relay takes RTP over UDP only
    (a TCP-interleaved SETUP is refused), so clients use `--rtsp-transport udp`."""

    def __init__(self, folder: Path, video: Path) -> None:
        self.video = video
        self.client_port, self.source_port = free_port(), free_port()
        self.url = f"rtsp://127.0.0.1:{self.client_port}/cam"
        self._log = (folder / "rtsp.log").open("ab")
        self.server = subprocess.Popen(
            [
                _need("rtsp-server-perl"),
                "--clientport",
                str(self.client_port),
                "--serverport",
                str(self.source_port),
                "--client_listen_address",
                "127.0.0.1",
                "--source_listen_address",
                "127.0.0.1",
                "--rtp_start_port",
                str(20_000 + free_port() % 20_000),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.publisher: subprocess.Popen | None = None

    async def start_publisher(self) -> None:
        await eventually(lambda: _listening(self.source_port), 10, "the RTSP server listening")
        self.publisher = await asyncio.to_thread(
            subprocess.Popen,
            [
                _need("ffmpeg"),
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                str(self.video),
                # Re-encoded with a keyframe every 5 frames: a client joining, or losing a UDP
                # packet, decodes again within half a second (a copied stream waits for the
                # writer's next keyframe).
                "-c:v",
                "mpeg4",
                "-g",
                "5",
                "-q:v",
                "5",
                "-f",
                "rtsp",
                "-rtsp_transport",
                "udp",
                f"rtsp://127.0.0.1:{self.source_port}/cam",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_publisher(self) -> None:
        """The stream ends. SIGTERM, not SIGKILL: the relay frees the mount point only when its
        publisher says TEARDOWN (after a SIGKILL it refuses the next ANNOUNCE with 403)."""
        if self.publisher is not None and self.publisher.poll() is None:
            self.publisher.terminate()
            try:
                self.publisher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.publisher.kill()
                self.publisher.wait(timeout=10)

    def close(self) -> None:
        self.stop_publisher()
        if self.server.poll() is None:
            self.server.kill()
            self.server.wait(timeout=10)
        self._log.close()


async def _resumes_after_a_drop(
    settings: Settings,
    ingest: Ingest,
    drop: Callable[[], None],
    restore: Callable[[], Awaitable[None]],
) -> None:
    """Frames arrive; the stream drops for ~3 s and comes back; frames arrive again, and the
    status and the summary count the reconnect."""
    await images(settings, 3, 40)
    dropped_at = datetime.now(UTC)
    drop()
    await asyncio.sleep(3)  # the outage itself: the camera is gone this long
    restored_at = datetime.now(UTC)
    await restore()
    topic = TopicNames(settings.topic_prefix).images

    async def after_restore() -> list[Record]:
        records = await read_to_end(settings, topic)
        fresh = [r for r in records if captured(r) > restored_at]
        return fresh if len(fresh) >= 3 else []

    await eventually(after_restore, 40, "3 frames captured after the stream came back", every_s=1)
    assert re.search(r"\[reconnecting\].* reconnects 0 ", ingest.output())
    assert re.search(r"\[connected\].* reconnects [1-9] ", ingest.output())
    assert await asyncio.to_thread(ingest.stop) == 0, ingest.output()
    found = summary(ingest.output())
    assert found.group(2) == "stopped"
    assert int(found.group(7)) >= 1
    assert int(found.group(3)) == int(found.group(4))  # every frame sent was acknowledged
    sent = await read_to_end(settings, topic)
    assert len(sent) == int(found.group(3))
    ids = [headers(r)["request-id"] for r in sent]
    assert len(set(ids)) == len(ids)
    # Nothing was sent while the camera was gone (no stale frames stamped as new).
    gap = [r for r in sent if dropped_at + timedelta(seconds=0.5) < captured(r) < restored_at]
    assert gap == [], [headers(r) for r in gap]


async def test_rtsp_ingestion_resumes_after_the_stream_drops(
    deployment: Settings, tmp_path: Path, ingests: list[Ingest]
) -> None:
    video = write_video(tmp_path / "cam.mp4", list(range(4)))
    camera = RtspCamera(tmp_path, video)
    try:
        await camera.start_publisher()
        ingest = Ingest(
            deployment,
            tmp_path,
            camera.url,
            "--source-id",
            "cam-rtsp",
            "--every",
            "1s",
            "--rtsp-transport",
            "udp",
            "--timeout",
            "3s",
            "--status-every",
            "1s",
        )
        ingests.append(ingest)
        await _resumes_after_a_drop(
            deployment, ingest, camera.stop_publisher, camera.start_publisher
        )
    finally:
        camera.close()


class MjpegCamera:
    """An HTTP MJPEG camera (multipart/x-mixed-replace, 10 fps) that can be switched off (its
    connections cut, new ones refused) and on again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self.frames = [_jpeg(seed) for seed in range(3)]
        self._server: ThreadingHTTPServer | None = None
        self._on = threading.Event()

    def start(self) -> None:
        frames, on = self.frames, self._on

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                while on.is_set():
                    data = frames[(index // 10) % len(frames)]
                    part = (
                        b"--frame\r\nContent-Type: image/jpeg\r\n"
                        + f"Content-Length: {len(data)}\r\n\r\n".encode()
                        + data
                        + b"\r\n"
                    )
                    try:
                        self.wfile.write(part)
                        self.wfile.flush()
                    except OSError:
                        return
                    index += 1
                    time.sleep(1 / FPS)
                self.close_connection = True

        self._on.set()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.allow_reuse_address = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    async def restart(self) -> None:
        await asyncio.to_thread(self.start)

    def stop(self) -> None:
        self._on.clear()  # streaming handlers end their responses
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


ThreadingHTTPServer.allow_reuse_address = True


async def test_mjpeg_over_http_resumes_after_the_camera_drops(
    deployment: Settings, tmp_path: Path, ingests: list[Ingest]
) -> None:
    camera = MjpegCamera()
    camera.start()
    try:
        ingest = Ingest(
            deployment,
            tmp_path,
            camera.url,
            "--source-id",
            "cam-mjpeg",
            "--every",
            "500ms",
            "--timeout",
            "3s",
            "--status-every",
            "1s",
        )
        ingests.append(ingest)
        await _resumes_after_a_drop(deployment, ingest, camera.stop, camera.restart)
    finally:
        camera.stop()


# --- refusals --------------------------------------------------------------------------------


async def test_ingest_names_what_it_cannot_use(
    service_settings: Settings, tmp_path: Path, ingests: list[Ingest]
) -> None:
    """Exit 2 for a bad command line, 1 for what cannot be used; each says why, in one line."""
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    cases = {
        ("missing/", "--source-id", "c"): (2, "no folder missing"),
        (str(not_a_video), "--source-id", "c", "--every", "soon"): (2, "is not a duration"),
        ("ftp://cam/x", "--source-id", "c"): (2, "unsupported source ftp://"),
        # No `mugpos setup` in this deployment: the images topic does not exist yet.
        (f"dir:{tmp_path}", "--source-id", "c"): (1, "run `mugpos setup` first"),
    }
    runs = {args: Ingest(service_settings, tmp_path, *args) for args in cases}
    ingests.extend(runs.values())
    for args, (code, message) in cases.items():
        assert await asyncio.to_thread(runs[args].wait, 60) == code, runs[args].output()
        assert message in " ".join(runs[args].output().split()), runs[args].output()


async def test_a_file_that_is_no_video_ends_with_exit_1(
    deployment: Settings, tmp_path: Path, ingests: list[Ingest]
) -> None:
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    ingest = Ingest(deployment, tmp_path, str(not_a_video), "--source-id", "c")
    ingests.append(ingest)
    assert await asyncio.to_thread(ingest.wait, 60) == 1, ingest.output()
    assert f"cannot open {not_a_video} as a video" in ingest.output()
