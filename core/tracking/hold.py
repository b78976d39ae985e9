"""Verdicts that hold over time: a rule with a `hold` changes its outcome for a subject (a tracked
mug, or the scene) only once the new outcome has lasted that long, in frame time or in frames.

That is both hysteresis (one missed detection, a hand passing over a mug, does not flip a
verdict) and dwell time ("a mug off its coaster for more than 30 s"). A tracked mug hidden in this
frame keeps its outcome: a failing mug under a hand still fails the rule. Mugs not tracked yet
(ByteTrack confirms a new track on its second frame) do not count against a held rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from core.rules import CompiledRule, Verdict
from core.rules.spec import Hold
from core.tracking.state import Held, SourceState


def step(
    held: Held | None,
    failing: bool,
    now: float,
    hold: Hold,
    first_seen: float | None = None,
    earlier_frames: int = 0,
) -> Held:
    """The subject's outcome after one more frame whose own outcome is `failing`. A subject new
    to the rule passes until failing has lasted, counted from `first_seen` and its
    `earlier_frames` (a track is confirmed on its second frame: its first one counts too)."""
    if held is None:
        start = first_seen if first_seen is not None else now
        held = Held(False, start, start if failing else None, earlier_frames if failing else 0)
    if failing == held.failing:
        return Held(held.failing, held.since)
    since = held.pending_since if held.pending_since is not None else now
    frames = held.pending_frames + 1
    lasted = now - since >= hold.seconds if hold.seconds is not None else frames >= hold.frames
    if lasted:
        return Held(failing, since)
    return Held(held.failing, held.since, since, frames)


def describe(hold: Hold) -> str:
    if hold.seconds is not None:
        return f"{hold.seconds:g} s"
    return f"{hold.frames} frame{'s' if hold.frames != 1 else ''}"


def hold_verdicts(
    verdicts: Sequence[Verdict],
    rules: Mapping[str, CompiledRule],
    state: SourceState,
    tracked: Mapping[int, str],
    now: float,
    *,
    advance: bool = True,
) -> list[Verdict]:
    """Each verdict with its rule's hold applied (`instant_passed` keeps this picture's own
    outcome). `tracked`: {mug index: track id} of this frame. With `advance=False` (a frame
    already applied, redelivered) the states are read, not stepped."""
    out = []
    for verdict in verdicts:
        rule = rules.get(verdict.rule_id)
        hold = rule.spec.hold if rule is not None else None
        if hold is None or verdict.passed is None:
            out.append(replace(verdict, instant_passed=verdict.passed))
        elif rule is not None and rule.spec.scope == "mug":
            out.append(_per_mug(verdict, hold, state, tracked, now, advance))
        else:
            out.append(_scene(verdict, hold, state, now, advance))
    return out


def _per_mug(
    verdict: Verdict,
    hold: Hold,
    state: SourceState,
    tracked: Mapping[int, str],
    now: float,
    advance: bool,
) -> Verdict:
    rule_id = verdict.rule_id
    for index, track_id in tracked.items():
        track = state.tracks[track_id]
        if advance:
            track.held[rule_id] = step(
                track.held.get(rule_id),
                index in verdict.subjects,
                now,
                hold,
                track.first_seen,
                track.seen_frames - 1,
            )
    failing_here = tuple(
        i for i, t in sorted(tracked.items()) if _failing(state.tracks[t].held.get(rule_id))
    )
    present = set(tracked.values())
    hidden = [
        t.track_id
        for t in state.tracks.values()
        if t.track_id not in present and _failing(t.held.get(rule_id))
    ]
    passed = not failing_here and not hidden
    if hidden and not failing_here:
        message = (
            f"{verdict.message}; still failing, hidden in this picture: {', '.join(sorted(hidden))}"
        )
    else:
        message = _message(verdict, passed, hold)
    return replace(
        verdict,
        passed=passed,
        subjects=failing_here,
        message=message,
        instant_passed=verdict.passed,
    )


def _scene(verdict: Verdict, hold: Hold, state: SourceState, now: float, advance: bool) -> Verdict:
    if advance:
        state.scene[verdict.rule_id] = step(
            state.scene.get(verdict.rule_id), verdict.passed is False, now, hold
        )
    passed = not state.scene[verdict.rule_id].failing if verdict.rule_id in state.scene else True
    return replace(
        verdict,
        passed=passed,
        subjects=verdict.subjects if not passed else (),
        message=_message(verdict, passed, hold),
        instant_passed=verdict.passed,
    )


def _failing(held: Held | None) -> bool:
    return held is not None and held.failing


def _message(verdict: Verdict, passed: bool, hold: Hold) -> str:
    if passed == verdict.passed:
        return verdict.message
    if passed:
        return f"{verdict.message} (not counted yet: it must last {describe(hold)})"
    return f"{verdict.message} (still failing until passing has lasted {describe(hold)})"
