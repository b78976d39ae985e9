"""`mugpos ingest`, the pure part (core.ingest) and the folder watcher's completeness rule."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from core.ingest.change import ChangeFilter, changed_blocks, fingerprint
from core.ingest.interval import parse_interval
from core.ingest.schedule import SamplingSchedule, sampled_times
from core.ingest.source import SourceKind, classify_source, mask_url, network_stream
from core.ingest.stats import IngestStats
from core.ingest.wire import RequestIds, capture_options, check_source_id, frame_headers
from core.pipeline.intake import parse_headers
from core.synth.render import render_scene
from core.synth.scene import sample_scene
from infra.capture.folder import FolderWatcher
from infra.capture.frames import Frame, encode_jpeg, pixels_print
from infra.capture.sender import FrameSender


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m", 60.0), ("1.5s", 1.5), ("2", 2.0), (" 10 S ", 10.0)],
)
def test_intervals_parse(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-1s", "5x", "s", "1.2.3s", "0ms"])
def test_bad_intervals_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_interval(text)


def test_schedule_on_a_video_timeline() -> None:
    """10 s at 10 fps, every 2 s: the frames at 0, 2, 4, 6 and 8 s (none at 10 s: no such frame)."""
    frames = [i / 10 for i in range(100)]
    assert sampled_times(frames, 2.0) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert len(sampled_times(frames, 1.0)) == 10
    # Faster than the frames come: every frame once, none twice.
    assert sampled_times(frames, 0.05) == frames


def test_schedule_takes_the_first_frame_at_or_after_each_instant() -> None:
    # 3 fps against a 1 s grid: instants fall between frames; each takes the next frame.
    frames = [i / 3 for i in range(10)]  # 0, .33, .67, 1.0, 1.33, ..., 3.0
    assert sampled_times(frames, 0.5) == pytest.approx([0, 2 / 3, 1.0, 5 / 3, 2.0, 8 / 3, 3.0])


def test_schedule_skips_missed_instants_instead_of_catching_up() -> None:
    schedule = SamplingSchedule(1.0)
    assert schedule.due(0.0)
    schedule.taken(0.0)
    assert not schedule.due(0.9)
    # A 4.5 s gap in the stream: one frame at 5.5, then the grid goes on at 6, not at 2, 3, 4.
    assert schedule.due(5.5)
    schedule.taken(5.5)
    assert schedule.next_at == 6.0
    assert not schedule.due(5.9)
    assert schedule.due(6.0)


def test_schedule_on_a_wall_clock_start() -> None:
    schedule = SamplingSchedule(0.5, start=1000.0)
    assert not schedule.due(999.9)
    schedule.taken(1000.01)
    assert schedule.next_at == pytest.approx(1000.5)


def _scene(seed: int, size: int = 320) -> np.ndarray:
    image, _ = render_scene(sample_scene(seed, size), size)
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)


def _recompressed(pixels: np.ndarray, quality: int) -> np.ndarray:
    ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buffer, cv2.IMREAD_COLOR)


def _mug(scene: np.ndarray, centre: tuple[int, int], radius: int, colour) -> np.ndarray:
    with_mug = scene.copy()
    cv2.circle(with_mug, centre, radius, colour, -1)
    return with_mug


def test_the_same_picture_recompressed_noisy_or_darker_is_unchanged() -> None:
    rng = np.random.default_rng(0)
    for seed in range(6):
        scene = _scene(seed)
        noisy = np.clip(scene + rng.normal(0, 10, scene.shape), 0, 255).astype(np.uint8)
        darker = (scene * 0.8).astype(np.uint8)  # auto-exposure: no change
        for variant in (_recompressed(scene, 40), noisy, darker):
            assert changed_blocks(fingerprint(scene), fingerprint(variant)) == 0
            assert changed_blocks(pixels_print(scene), pixels_print(variant)) == 0


def test_a_mug_appearing_is_a_change_and_other_scenes_are_far() -> None:
    """What a 64-bit dHash misses (see core.ingest.change): a small mug, anywhere."""
    rng = np.random.default_rng(1)
    for seed in range(6):
        scene = _scene(seed)
        before = fingerprint(scene)
        for colour in [(230, 230, 230), (20, 20, 120), (150, 150, 150)]:
            centre = (int(rng.integers(60, 260)), int(rng.integers(60, 260)))
            assert changed_blocks(before, fingerprint(_mug(scene, centre, 12, colour))) >= 3
        assert changed_blocks(before, fingerprint(_scene(seed + 100))) > 100


def test_fingerprints_of_grey_and_tiny_pictures() -> None:
    grey = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    assert fingerprint(grey).shape == (32, 32, 3)
    assert changed_blocks(fingerprint(grey), fingerprint(grey[:, ::-1])) > 500
    assert fingerprint(np.zeros((3, 2, 3), np.uint8)).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="not an image"):
        fingerprint(np.zeros((4, 4, 2), np.uint8))


def test_change_filter_compares_with_the_last_frame_sent() -> None:
    scene = _scene(7)
    change = ChangeFilter(threshold=2)
    first = fingerprint(scene)
    assert not change.unchanged(first)  # nothing sent yet
    change.sent(first)
    assert change.unchanged(fingerprint(_recompressed(scene, 50)))
    moved = fingerprint(_mug(scene, (100, 100), 20, (20, 20, 120)))
    assert not change.unchanged(moved)
    change.sent(moved)
    assert change.unchanged(moved)
    assert not change.unchanged(first)  # taken away again: a change too
    with pytest.raises(ValueError, match="from 0 to 1023"):
        ChangeFilter(1024)


@pytest.mark.parametrize(
    ("url", "is_dir", "kind", "location"),
    [
        ("rtsp://cam.local:554/stream1", False, SourceKind.RTSP, "rtsp://cam.local:554/stream1"),
        ("RTSPS://cam/1", False, SourceKind.RTSP, "RTSPS://cam/1"),
        ("http://cam/mjpg/video.mjpg", False, SourceKind.HTTP, "http://cam/mjpg/video.mjpg"),
        ("/dev/video0", False, SourceKind.DEVICE, "/dev/video0"),
        ("0", False, SourceKind.DEVICE, "0"),
        ("dir:/srv/drop", False, SourceKind.FOLDER, "/srv/drop"),
        ("/srv/drop/", False, SourceKind.FOLDER, "/srv/drop/"),
        ("/srv/drop", True, SourceKind.FOLDER, "/srv/drop"),
        ("clip.mp4", False, SourceKind.VIDEO, "clip.mp4"),
        ("file:///tmp/clip.mp4", False, SourceKind.VIDEO, "/tmp/clip.mp4"),
    ],
)
def test_sources_are_told_apart(url: str, is_dir: bool, kind: SourceKind, location: str) -> None:
    spec = classify_source(url, is_dir=is_dir)
    assert (spec.kind, spec.location) == (kind, location)
    assert spec.live == (kind in {SourceKind.RTSP, SourceKind.HTTP, SourceKind.DEVICE})


def test_unknown_schemes_are_refused_and_passwords_not_shown() -> None:
    with pytest.raises(ValueError, match="unsupported source ftp://"):
        classify_source("ftp://host/x")
    spec = classify_source("rtsp://admin:s3cret@10.0.0.5/live")
    assert spec.shown() == "rtsp://admin:***@10.0.0.5/live"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:secret@10.0.0.5/live", "rtsp://admin:***@10.0.0.5/live"),
        ("rtsp://admin:p@ss:w/rd@cam:554/live", "rtsp://admin:***@cam:554/live"),
        ("rtsp://cam/a@b", "rtsp://cam/a@b"),
        (
            "http://cam/video.cgi?user=admin&pwd=s3&res=hd",
            "http://cam/video.cgi?user=admin&pwd=***&res=hd",
        ),
        ("http://cam/v?Password=x#f", "http://cam/v?Password=***#f"),
        ("http://u:pw@cam/v.mjpg?x=a@b", "http://u:***@cam/v.mjpg?x=a@b"),
        ("rtsp://admin@cam/live", "rtsp://admin@cam/live"),
        ("http://cam/v.mjpg", "http://cam/v.mjpg"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_passwords_in_urls_are_masked_whole(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_managed_streams_are_network_streams_only(tmp_path) -> None:
    assert network_stream("rtsps://cam.lan/1").kind is SourceKind.RTSP
    assert network_stream("https://cam.lan/v.mjpg").kind is SourceKind.HTTP
    for url in (
        "file:///etc/passwd",
        str(tmp_path),
        f"{tmp_path}/",
        f"dir:{tmp_path}",
        "/dev/video0",
        "0",
        "clip.mp4",
        "ftp://cam/x",
    ):
        with pytest.raises(ValueError, match="network stream only"):
            network_stream(url)
    for url in ("rtsp://", "http:///v.mjpg", "http://[::1/v"):
        with pytest.raises(ValueError, match="no host"):
            network_stream(url)
    with pytest.raises(ValueError, match="without spaces"):
        network_stream("rtsp://cam/a b")


def test_frames_carry_the_headers_the_worker_reads() -> None:
    moment = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    ids = RequestIds("cam-1")
    first, second = ids.next(moment), ids.next(moment)
    assert first == f"cam-1-{int(moment.timestamp() * 1000)}"
    assert second == f"cam-1-{int(moment.timestamp() * 1000) + 1}"  # same ms: still unique
    parsed = parse_headers(frame_headers(first, "cam-1", moment, "image/jpeg"))
    assert parsed.request_id == first
    assert parsed.source_id == "cam-1"
    assert parsed.captured_at == moment
    assert parsed.content_type == "image/jpeg"


def test_source_ids_are_checked() -> None:
    assert check_source_id("desk-1") == "desk-1"
    for bad in ("", " x", "a\tb", "x" * 101):
        with pytest.raises(ValueError, match="source id"):
            check_source_id(bad)


def test_rtsp_transport_joins_the_operators_capture_options() -> None:
    assert capture_options(None, "tcp") == "rtsp_transport;tcp"
    assert (
        capture_options("stimeout;5000000|rtsp_transport;udp", "tcp")
        == "stimeout;5000000|rtsp_transport;tcp"
    )


def test_status_line_and_summary() -> None:
    stats = IngestStats("cam-1", started_at=100.0)
    stats.state = "connected"
    for i in range(50):
        stats.frame_read(100.0 + i * 0.1)
    stats.sent, stats.acked, stats.unchanged, stats.dropped, stats.reconnects = 7, 6, 3, 2, 1
    line = stats.status_line(105.0)
    assert line.startswith("cam-1 [connected] ")
    assert "sent 7 (acked 6, in flight 1) | unchanged 3 | dropped 2 | reconnects 1" in line
    assert "last frame 0.1s ago" in line
    assert stats.fps(110.0) == pytest.approx(0.0)  # nothing read in the last 5 s
    summary = stats.summary(110.0, "stopped")
    assert summary.startswith("ingest cam-1 stopped: sent 7, acknowledged 6, unchanged 3, ")
    assert "reconnects 1" in summary
    assert "50 frames read in 10.0 s" in summary


def test_status_counts_frames_per_second() -> None:
    stats = IngestStats("c", started_at=0.0)
    stats.fps(0.0)
    for i in range(25):
        stats.frame_read(i * 0.1)
    assert stats.fps(2.5) == pytest.approx(10.0)


def test_large_frames_are_downscaled_to_fit() -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)  # incompressible
    data, shrunk = encode_jpeg(noise, limit=512 * 1024)
    assert shrunk
    assert len(data) <= 512 * 1024
    small, shrunk = encode_jpeg(_scene(3))
    assert not shrunk
    assert small[:2] == b"\xff\xd8"


def test_folder_watcher_waits_for_complete_files(tmp_path) -> None:
    jpeg = cv2.imencode(".jpg", _scene(4, 160))[1].tobytes()
    (tmp_path / "old.jpg").write_bytes(jpeg)
    (tmp_path / "new.jpg").write_bytes(jpeg)
    os.utime(tmp_path / "old.jpg", ns=(1_000_000_000, 1_000_000_000))
    (tmp_path / "clip.mp4").write_bytes(b"not read")
    (tmp_path / ".hidden.jpg").write_bytes(jpeg)
    (tmp_path / "upload.jpg.part").write_bytes(jpeg)
    half = tmp_path / "slow.jpg"
    half.write_bytes(jpeg[: len(jpeg) // 2])
    watcher = FolderWatcher(tmp_path)
    ready, skipped = watcher.poll(0)
    assert ready == []
    assert [p.name for p in skipped] == ["clip.mp4"]
    ready, skipped = watcher.poll(500_000_000)
    assert [p.name for p in ready] == ["old.jpg", "new.jpg"]  # oldest first; not the half file
    assert skipped == []
    assert watcher.poll(1_000_000_000) == ([], [])  # each once
    with half.open("ab") as handle:
        handle.write(jpeg[len(jpeg) // 2 :])
    assert watcher.poll(1_500_000_000)[0] == []  # changed: seen once more first
    assert [p.name for p in watcher.poll(2_000_000_000)[0]] == ["slow.jpg"]


def test_folder_watcher_sends_a_stuck_partial_file_after_the_grace(tmp_path) -> None:
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    watcher = FolderWatcher(tmp_path)
    assert watcher.poll(0)[0] == []
    assert watcher.poll(1_000_000_000)[0] == []
    assert [p.name for p in watcher.poll(11_000_000_000)[0]] == ["cut.jpg"]


class _SlowBroker:
    """A producer whose acknowledgements the test hands out."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list]] = []
        self.acks: list[asyncio.Future] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: list) -> asyncio.Future:
        self.sent.append((topic, value, key, headers))
        ack: asyncio.Future = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def _frame(second: int, tiny: np.ndarray) -> Frame:
    return Frame(datetime(2026, 5, 1, 12, 0, second, tzinfo=UTC), pixels=tiny)


async def test_sender_keeps_in_flight_bounded_and_live_frames_latest() -> None:
    broker, stats = _SlowBroker(), IngestStats("cam-1", started_at=0.0)
    sender = FrameSender(broker, "p.images.v1", stats, max_in_flight=2)  # type: ignore[arg-type]
    task = asyncio.create_task(sender.run())
    tiny = np.zeros((8, 8, 3), np.uint8)
    for second in range(6):  # 2 go out, 1 waits in the mailbox, 3 are replaced by newer ones
        await sender.offer_latest(_frame(second, tiny))
        await _settle()
    assert (len(broker.sent), stats.in_flight, stats.dropped) == (2, 2, 3)
    broker.acks[0].set_result(None)
    await _settle()
    assert len(broker.sent) == 3
    newest = dict(broker.sent[2][3])
    assert newest["captured-at"] == b"2026-05-01T12:00:05.000+00:00"  # the latest one went
    assert broker.sent[2][2] == b"cam-1"
    for ack in broker.acks[1:]:
        ack.set_exception(OSError("broker gone")) if ack is broker.acks[2] else ack.set_result(None)
    await sender.close(1.0)
    await task
    assert (stats.sent, stats.acked, stats.failed, stats.in_flight) == (3, 2, 1, 0)


async def test_sender_makes_files_wait_instead_of_dropping() -> None:
    broker, stats = _SlowBroker(), IngestStats("cam-1", started_at=0.0)
    sender = FrameSender(broker, "p.images.v1", stats, max_in_flight=1)  # type: ignore[arg-type]
    task = asyncio.create_task(sender.run())
    tiny = np.zeros((8, 8, 3), np.uint8)
    await sender.put(_frame(0, tiny))
    await sender.put(_frame(1, tiny))  # in the mailbox: the only slot is busy
    third = asyncio.create_task(sender.put(_frame(2, tiny)))
    await _settle()
    assert not third.done()
    assert len(broker.sent) == 1
    broker.acks[0].set_result(None)
    await _settle()
    assert third.done()
    assert len(broker.sent) == 2
    broker.acks[1].set_result(None)
    await _settle()
    broker.acks[2].set_result(None)
    await sender.close(1.0)
    await task
    assert (stats.sent, stats.acked, stats.dropped) == (3, 3, 0)
    assert [dict(s[3])["request-id"].decode() for s in broker.sent] == [
        f"cam-1-{int(datetime(2026, 5, 1, 12, 0, s, tzinfo=UTC).timestamp() * 1000)}"
        for s in range(3)
    ]


async def test_sender_close_gives_up_on_unanswered_sends() -> None:
    broker, stats = _SlowBroker(), IngestStats("cam-1", started_at=0.0)
    sender = FrameSender(broker, "p.images.v1", stats)  # type: ignore[arg-type]
    task = asyncio.create_task(sender.run())
    await sender.put(_frame(0, np.zeros((8, 8, 3), np.uint8)))
    await _settle()
    await sender.close(0.2)
    await task
    assert (stats.sent, stats.acked, stats.failed) == (1, 0, 1)


class _DeadBroker(_SlowBroker):
    """A producer whose send() never returns: metadata for a broker that is down."""

    async def send(self, topic: str, value: bytes, key: bytes, headers: list) -> asyncio.Future:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_frame_never_handed_to_a_dead_broker_counts_as_failed() -> None:
    stats = IngestStats("cam-1", started_at=0.0)
    sender = FrameSender(_DeadBroker(), "p.images.v1", stats)  # type: ignore[arg-type]
    task = asyncio.create_task(sender.run())
    await sender.put(_frame(0, np.zeros((8, 8, 3), np.uint8)))
    await _settle()
    await sender.close(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (stats.sent, stats.failed) == (0, 1)
