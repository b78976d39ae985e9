"""A registered source's frames through real `mugpos worker` processes: mugs tracked across
frames, a dwell rule with its hold, a hand over the mug, and the worker killed mid-sequence with
the sequence continuing on another worker.

The frames are one fixed camera's pictures of a generated desk (core.synth.sequence), stamped 10 s
apart with `captured-at`, all on one partition as a source's frames are (keyed by source id).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from core.config import Settings
from core.rules import parse_rule
from core.rules.spec import Action
from core.sources import SourceSpec
from core.synth.sequence import desk_frames, desk_scene
from infra import mongo
from infra.rules_store import RulesRepository
from infra.sources_store import SourcesRepository
from schemas.messages import Alert, AnalysisResult
from schemas.topics import TopicNames
from tests.integration.kafka_io import collect, eventually, publish, read_to_end, results
from tests.integration.workers import WorkerProcess

SOURCE = "desk-cam-1"
START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
# (picture, seconds after START): on its coaster, moved off at 20 s, a hand over it at 60-70 s.
SEQUENCE = [
    ("on", 0),
    ("on", 10),
    ("off", 20),
    ("off", 30),  # <- the first worker is killed after this frame's result
    ("off", 40),
    ("off", 50),
    ("hand", 60),
    ("hand", 70),
    ("off", 80),
]
KILL_AFTER = 4
DESK_SEED, SIZE = 1000, 480


def _jpeg(image) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


def _coaster_zone() -> dict:
    """A zone (px) around the desk's coaster: the mug is in it until it is moved."""
    desk = desk_scene(DESK_SEED, SIZE)
    coaster = desk.coasters[desk.mugs[0].coaster].shape  # type: ignore[index]
    x, y, r = (
        coaster.cx * desk.px_per_cm,
        coaster.cy * desk.px_per_cm,
        2 * coaster.diameter * desk.px_per_cm,
    )
    return {"polygon": [[x - r, y - r], [x + r, y - r], [x + r, y + r], [x - r, y + r]]}


async def _register(settings: Settings) -> str:
    """The source (its rules by tag, a zone) and two rules, one of another room's."""
    client = mongo.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        source = SourceSpec.model_validate(
            {
                "name": "desk camera",
                "rules": {"tags": ["desk"]},
                "zones": {"coaster": _coaster_zone()},
            }
        )
        await SourcesRepository(db).put(SOURCE, source, "test")
        rules = RulesRepository(db)
        elsewhere = parse_rule("At most 0 mugs per table.").model_copy(update={"tags": ["bar"]})
        await rules.create(elsewhere, "test")
        dwell = parse_rule("Every mug must be on a coaster for at least 30 seconds.")
        dwell = dwell.model_copy(update={"tags": ["desk"], "actions": [Action(type="alert")]})
        return (await rules.create(dwell, "test")).rule_id
    finally:
        client.close()


def _frames(ids: list[str], pictures: dict[str, bytes], part: slice) -> list:
    return [
        (
            ids[i],
            pictures[name],
            [
                ("source-id", SOURCE.encode()),
                ("captured-at", (START + timedelta(seconds=t)).isoformat().encode()),
            ],
            0,
        )
        for i, (name, t) in list(enumerate(SEQUENCE))[part]
    ]


async def test_tracks_and_held_verdicts_survive_a_worker_killed_mid_sequence(
    deployment: Settings, tmp_path
) -> None:
    rule_id = await _register(deployment)
    pictures = {name: _jpeg(image) for name, image in desk_frames(DESK_SEED, SIZE).items()}
    names = TopicNames(deployment.topic_prefix)
    ids = [f"desk-frame-{i}" for i in range(len(SEQUENCE))]
    first = WorkerProcess(deployment, tmp_path, "first")
    second = None
    try:
        await publish(deployment, _frames(ids, pictures, slice(0, KILL_AFTER)))
        await collect(deployment, names.results, ids[:KILL_AFTER], 240)
        first.kill()
        second = WorkerProcess(deployment, tmp_path, "second")
        await publish(deployment, _frames(ids, pictures, slice(KILL_AFTER, None)))
        records = await collect(deployment, names.results, ids, 300)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    got: dict[str, AnalysisResult] = {rid: found[-1] for rid, found in results(records).items()}
    frames = [got[rid] for rid in ids]
    verdicts = [next(v for v in f.verdicts if v.rule_id == rule_id) for f in frames]
    assert all(f.source_version == 1 for f in frames)
    assert {v.rule_id for f in frames for v in f.verdicts} == {rule_id}, "only the desk's rules"
    in_zone = [[m["in_zone"] for m in (f.positioning or {})["mugs"]] for f in frames]
    assert in_zone[:4] == [[True], [True], [False], [False]], "the source's zone applied"
    # The picture alone: on the coaster, then off, then no mug under the hand.
    assert [v.instant_passed for v in verdicts] == [
        True,
        True,
        False,
        False,
        False,
        False,
        True,
        True,
        False,
    ]
    # Held: off since 20 s, failing once that has lasted 30 s (at 50 s, on the second worker,
    # from the first worker's state), and still failing while the hand hides the mug.
    assert [v.passed for v in verdicts] == [True] * 5 + [False] * 4
    moved = {t.track_id for f in frames[3:] for t in f.tracks if t.mug is not None}
    assert len(moved) == 1, f"the moved mug kept one track id across the workers: {moved}"
    (track_id,) = moved
    hidden = next(t for t in frames[6].tracks if t.track_id == track_id)
    assert hidden.mug is None
    assert hidden.held[rule_id].failing
    assert hidden.held[rule_id].since == START + timedelta(seconds=20)
    assert any(t.track_id == track_id and t.mug == 0 for t in frames[8].tracks)
    # One alert for the mug, raised when its held verdict turned (50 s), not one per failing
    # frame; a frame redone after the kill may publish it again, under the same id.
    alerts = await eventually(lambda: _alerts(deployment), 30, "the alert event")
    assert {(a.event, a.subject, a.request_id, a.raised_at) for a in alerts} == {
        ("raised", track_id, ids[5], START + timedelta(seconds=50))
    }
    assert len({a.alert_id for a in alerts}) == 1
    assert alerts[0].dedup_key == f"{SOURCE}/{rule_id}/{track_id}"


async def _alerts(settings: Settings) -> list[Alert]:
    records = await read_to_end(settings, TopicNames(settings.topic_prefix).alerts)
    return [Alert.model_validate_json(r.value) for r in records]
