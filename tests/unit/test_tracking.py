"""Mugs tracked across a source's frames (ultralytics ByteTrack) and rules with a hold, on
detections laid out by hand so each frame's truth is known."""

from __future__ import annotations

from core.models.types import Detection
from core.positioning import analyze
from core.rules import compile_rule, parse_rule
from core.rules.engine import CompiledRule
from core.tracking import SourceState, SourceTracker, follow_frame
from core.tracking.follow import FollowedFrame

SIZE = (640, 480)
TABLE = Detection("table", "table", 0.9, (20.0, 20.0, 620.0, 460.0))
COASTER = Detection("coaster", "coaster", 0.9, (90.0, 90.0, 190.0, 190.0))
ON_COASTER = (100.0, 100.0, 180.0, 180.0)
OFF_COASTER = (330.0, 200.0, 410.0, 280.0)


def _rule(text: str, rule_id: str = "r1") -> CompiledRule:
    return compile_rule(parse_rule(text), rule_id)


def _frame(
    tracker: SourceTracker, rule: CompiledRule, n: str, t: float, mug: tuple | None
) -> FollowedFrame:
    """Frame `n` at time `t` with the mug at `mug` (None: a hand hides it)."""
    detections = [TABLE, COASTER] + ([Detection("mug", "mug", 0.9, mug)] if mug else [])
    facts = analyze(detections, SIZE)
    verdicts = [rule.evaluate(facts)]
    return follow_frame(tracker, n, facts, verdicts, {rule.rule_id: rule}, SIZE, t)


def test_a_hand_over_a_failing_mug_for_two_frames_does_not_flip_the_verdict() -> None:
    rule = _rule("Every mug must be on a coaster for at least 3 frames.")
    tracker = SourceTracker(SourceState("cam"))
    seen = [
        _frame(tracker, rule, f"f{i}", 100.0 + i, None if i in (5, 6) else OFF_COASTER)
        for i in range(1, 9)
    ]
    passed = [f.verdicts[0].passed for f in seen]
    instant = [f.verdicts[0].instant_passed for f in seen]
    # Off its coaster from the first frame: failing once that has lasted 3 frames, and still
    # failing while the hand hides the mug (the picture alone would pass: no mug to judge).
    assert passed == [True, True, False, False, False, False, False, False]
    assert instant == [False, False, False, False, True, True, False, False]
    ids = {t["track_id"] for f in seen for t in f.tracks}
    assert ids == {"t1"}, "one mug, one track, before and after the hand"
    hidden = seen[4].tracks[0]
    assert hidden["mug"] is None
    assert hidden["held"]["r1"]["failing"] is True
    assert "still failing, hidden in this picture: t1" in seen[4].verdicts[0].message


def test_a_hand_over_a_mug_on_its_coaster_does_not_flip_it_either() -> None:
    rule = _rule("Every mug must be on a coaster for at least 3 frames.")
    tracker = SourceTracker(SourceState("cam"))
    mugs = [ON_COASTER, ON_COASTER, None, None, ON_COASTER, ON_COASTER]
    seen = [_frame(tracker, rule, f"f{i}", float(i), m) for i, m in enumerate(mugs)]
    assert [f.verdicts[0].passed for f in seen] == [True] * 6
    assert {t["track_id"] for f in seen for t in f.tracks} == {"t1"}


def test_a_mug_moved_off_its_coaster_fails_the_dwell_rule_only_after_the_dwell_time() -> None:
    rule = _rule("Every mug must be on a coaster for at least 30 seconds.")
    tracker = SourceTracker(SourceState("cam"))
    # One frame every 10 s. Moved at t=20 further than its own size, the mug is a new track
    # there (ByteTrack confirms it on its second frame, at t=30); its time counts from t=20.
    path = [
        ON_COASTER,
        ON_COASTER,
        *[(300.0 + 5 * i, 200.0, 380.0 + 5 * i, 280.0) for i in range(6)],
    ]
    seen = [_frame(tracker, rule, f"f{i}", 10.0 * i, box) for i, box in enumerate(path)]
    verdicts = [f.verdicts[0] for f in seen]
    assert [v.instant_passed for v in verdicts] == [True, True] + [False] * 6
    # Off from t=20: not yet at 30 or 40, failing from t=50 (30 s off), since t=20.
    assert [v.passed for v in verdicts] == [True] * 5 + [False] * 3
    held = next(t for t in seen[5].tracks if t["mug"] == 0)["held"]["r1"]
    assert held["failing"]
    assert held["since"].timestamp() == 20.0
    assert held["for_s"] == 30.0
    assert "not counted yet: it must last 30 s" in verdicts[3].message


def test_a_flickering_scene_verdict_changes_only_once_the_change_has_held() -> None:
    rule = _rule("At most 1 mug per table for at least 2 frames.")
    tracker = SourceTracker(SourceState("cam"))
    second = Detection("mug", "mug", 0.9, OFF_COASTER)
    counts = [1, 2, 1, 2, 2, 1, 2, 1, 1]
    seen = []
    for i, mugs in enumerate(counts):
        detections = [TABLE, COASTER, Detection("mug", "mug", 0.9, ON_COASTER)]
        facts = analyze(detections + [second] * (mugs - 1), SIZE)
        seen.append(
            follow_frame(tracker, f"f{i}", facts, [rule.evaluate(facts)], {"r1": rule}, SIZE, i)
        )
    instant = [f.verdicts[0].instant_passed for f in seen]
    assert instant == [True, False, True, False, False, True, False, True, True]
    # Two frames in a row to fail, two in a row to pass again: single frames change nothing.
    assert [f.verdicts[0].passed for f in seen] == [True] * 4 + [False] * 4 + [True]
    assert "still failing until passing has lasted 2 frames" in seen[7].verdicts[0].message


def test_the_state_carries_over_to_a_new_tracker_with_its_ids_and_held_verdicts() -> None:
    rule = _rule("Every mug must be on a coaster for at least 30 seconds.")
    first = SourceTracker(SourceState("cam"))
    for i, t in enumerate((0.0, 10.0, 20.0)):
        _frame(first, rule, f"f{i}", t, OFF_COASTER)
    # Another worker: a fresh ByteTrack on the stored state (as read back from MongoDB).
    stored = SourceState.from_dict(first.state.to_dict())
    second = SourceTracker(stored)
    late = _frame(second, rule, "f3", 30.0, (302.0, 201.0, 382.0, 281.0))
    assert [t["track_id"] for t in late.tracks] == ["t1"]
    assert late.verdicts[0].passed is False, "off since t=0: the dwell ran out at t=30"
    assert late.tracks[0]["held"]["r1"]["since"].timestamp() == 0.0
    fresh = SourceTracker(SourceState("cam"))  # what a worker without the state would say
    for i, t in enumerate((30.0, 40.0)):
        alone = _frame(fresh, rule, f"g{i}", t, OFF_COASTER)
    assert alone.verdicts[0].passed is True


def test_a_redelivered_frame_is_not_applied_twice() -> None:
    rule = _rule("Every mug must be on a coaster for at least 3 frames.")
    tracker = SourceTracker(SourceState("cam"))
    _frame(tracker, rule, "f1", 1.0, OFF_COASTER)
    _frame(tracker, rule, "f2", 2.0, OFF_COASTER)
    again = _frame(tracker, rule, "f2", 2.0, OFF_COASTER)
    assert tracker.state.frames == 2
    assert again.verdicts[0].passed is True
    assert _frame(tracker, rule, "f3", 3.0, OFF_COASTER).verdicts[0].passed is False


def test_rules_without_a_hold_keep_the_picture_s_own_verdict() -> None:
    rule = _rule("Every mug must be on a coaster.")
    tracker = SourceTracker(SourceState("cam"))
    seen = [_frame(tracker, rule, f"f{i}", float(i), OFF_COASTER) for i in range(3)]
    assert [f.verdicts[0].passed for f in seen] == [False] * 3
    assert [f.verdicts[0].instant_passed for f in seen] == [False] * 3
