"""Alert events: a rule with an `alert` or `webhook` action fires when it starts failing for a
subject and resolves when it stops — not once per failing frame, which for a camera sampling every
few seconds would be an alert storm.

A subject is a tracked mug for a mug rule on a registered source (core.tracking), else the scene of
a named source; its alert lives in the source's state (`SourceState.alerts`), which the pipeline
stores with the frame. Once raised, an alert is not raised again for the same (source, rule,
subject) until `cooldown_s` has passed since, even if it resolved meanwhile. A picture of no
particular source (`schemas.topics.UNNAMED_SOURCES`) has no state: each failing picture is its own
alert, never resolved.

Each event's id is derived from its key, kind and picture, and the events of the last frames are
kept in the state: a frame redelivered after a failure publishes the same events again, under the
same ids, instead of none (its transitions were already applied).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.rules import CompiledRule, Verdict
from core.tracking.state import AlertMark, SourceState
from schemas.messages import Alert

ALERTING_ACTIONS = frozenset({"alert", "webhook"})
SCENE = "scene"
_IDS = uuid.UUID("6c1c9a52-3f0e-4d0b-9a57-2d3b8f1e0a11")  # namespace of alert ids


@dataclass(frozen=True, slots=True)
class Frame:
    """The picture the events come from."""

    source_id: str
    request_id: str
    at: float  # frame time, seconds since the epoch
    captured_at: datetime | None = None


def webhooks_of(rule: CompiledRule | None, source_webhooks: Sequence[str]) -> list[str]:
    """The endpoints an alert of `rule` goes to: its webhook actions', then the source's."""
    named = [
        a.params["endpoint"]
        for a in (rule.spec.actions if rule is not None else ())
        if a.type == "webhook" and "endpoint" in a.params
    ]
    return list(dict.fromkeys([*named, *source_webhooks]))


def alert_events(
    frame: Frame,
    verdicts: Sequence[Verdict],
    rules: Mapping[str, CompiledRule],
    state: SourceState | None,
    tracked: Mapping[int, str] | None,
    *,
    fresh: bool,
    cooldown_s: float,
    source_webhooks: Sequence[str] = (),
) -> list[Alert]:
    """This frame's alert events. `state`: the source's (None: a picture of no particular
    source); `tracked`: {mug index: track id} when the source's mugs are tracked; `fresh`: False
    when the frame was applied to the state before (its events are republished, not made)."""
    alerting = [v for v in verdicts if _alerts(v, rules.get(v.rule_id))]
    if state is None:
        return [
            _event(frame, v, "raised", frame.request_id, source_webhooks, rules)
            for v in alerting
            if v.passed is False
        ]
    if not fresh:
        return [
            Alert.model_validate(e)
            for e in state.recent_alerts
            if e["request_id"] == frame.request_id
        ]
    events = _Transitions(frame, state, cooldown_s, rules, source_webhooks)
    for verdict in alerting:
        rule = rules.get(verdict.rule_id)
        if verdict.passed is None:
            events.keep(verdict.rule_id)
        elif tracked is not None and rule is not None and rule.spec.scope == "mug":
            events.per_track.add(verdict.rule_id)
            for index, track_id in tracked.items():
                events.step(verdict, track_id, failing=index in verdict.subjects)
        else:
            events.step(verdict, SCENE, failing=verdict.passed is False)
    made = events.close_the_rest(set(state.tracks) if tracked is not None else None)
    state.remember_alerts([e.model_dump(mode="json") for e in made])
    return made


class _Transitions:
    """The steps of one frame over a source's alert marks."""

    def __init__(
        self,
        frame: Frame,
        state: SourceState,
        cooldown_s: float,
        rules: Mapping[str, CompiledRule],
        source_webhooks: Sequence[str],
    ) -> None:
        self.frame, self.state, self.cooldown_s = frame, state, cooldown_s
        self.rules, self.source_webhooks = rules, source_webhooks
        self.made: list[Alert] = []
        self.touched: set[str] = set()
        self.kept_rules: set[str] = set()  # not applicable to this picture
        self.per_track: set[str] = set()  # stepped per tracked mug

    def keep(self, rule_id: str) -> None:
        """The rule does not apply to this picture: its marks stay as they are."""
        self.kept_rules.add(rule_id)

    def step(self, verdict: Verdict, subject: str, *, failing: bool) -> None:
        key = f"{verdict.rule_id}/{subject}"
        self.touched.add(key)
        mark = self.state.alerts.get(key)
        now = self.frame.at
        if failing:
            if mark is not None and (mark.open or now - mark.raised_at < self.cooldown_s):
                return  # open already, or raised too recently
            raised = _event(
                self.frame, verdict, "raised", subject, self.source_webhooks, self.rules
            )
            self.state.alerts[key] = AlertMark(key, True, now, raised.model_dump(mode="json"))
            self.made.append(raised)
        elif mark is not None and mark.open:
            self._resolve(mark, f"{verdict.name}: passes again")

    def close_the_rest(self, live_tracks: set[str] | None) -> list[Alert]:
        """Resolve the open alerts not stepped this frame whose rule no longer alerts on this
        source, or no longer this way, or whose mug is gone; forget the closed ones whose
        cooldown is over."""
        for key, mark in list(self.state.alerts.items()):
            if mark.open and key not in self.touched:
                why = self._gone(mark, live_tracks)
                if why is not None:
                    self._resolve(mark, f"{mark.raised['rule']}: resolved, {why}")
            if not mark.open and self.frame.at - mark.raised_at >= self.cooldown_s:
                del self.state.alerts[key]
        return self.made

    def _gone(self, mark: AlertMark, live_tracks: set[str] | None) -> str | None:
        """Why the alert ends without its rule passing; None while it stays open."""
        rule_id, _, subject = mark.key.rpartition("/")
        if rule_id in self.kept_rules:
            return None  # not applicable to this picture: nothing changes
        if rule_id not in self.per_track or subject == SCENE:
            return "the rule no longer alerts on this source this way"
        if live_tracks is not None and subject not in live_tracks:
            return f"mug {subject} is no longer seen"
        return None  # hidden in this picture: a hidden mug keeps its alert

    def _resolve(self, mark: AlertMark, message: str) -> None:
        mark.open = False
        raised = mark.raised
        self.made.append(
            Alert.model_validate(
                {
                    **raised,
                    "alert_id": _alert_id(raised["dedup_key"], "resolved", self.frame.request_id),
                    "event": "resolved",
                    "request_id": self.frame.request_id,
                    "subjects": [],
                    "measured": None,
                    "message": message,
                    "captured_at": self.frame.captured_at,
                    "resolved_at": _when(self.frame.at),
                }
            )
        )


def _alerts(verdict: Verdict, rule: CompiledRule | None) -> bool:
    """Whether the verdict's rule alerts. Its own actions, not the verdict's: a verdict lists
    actions only when this picture fails, and a held verdict can fail while the picture passes
    (a hand over a mug that is off its coaster)."""
    actions = {a.type for a in rule.spec.actions} if rule is not None else set(verdict.actions)
    return bool(ALERTING_ACTIONS & actions)


def _event(
    frame: Frame,
    verdict: Verdict,
    event: Literal["raised", "resolved"],
    subject: str,
    source_webhooks: Sequence[str],
    rules: Mapping[str, CompiledRule],
) -> Alert:
    dedup_key = f"{frame.source_id}/{verdict.rule_id}/{subject}"
    fields: dict[str, Any] = {
        "alert_id": _alert_id(dedup_key, event, frame.request_id),
        "dedup_key": dedup_key,
        "event": event,
        "request_id": frame.request_id,
        "source_id": frame.source_id,
        "rule_id": verdict.rule_id,
        "rule_version": verdict.version,
        "rule": verdict.name,
        "severity": verdict.severity,
        "subject": subject,
        "subjects": list(verdict.subjects),
        "measured": verdict.measured,
        "threshold": verdict.threshold,
        "message": verdict.message,
        "captured_at": frame.captured_at,
        "raised_at": _when(frame.at),
        "webhooks": webhooks_of(rules.get(verdict.rule_id), source_webhooks),
    }
    return Alert.model_validate(fields)


def _alert_id(dedup_key: str, event: str, request_id: str) -> str:
    return str(uuid.uuid5(_IDS, f"{dedup_key}|{event}|{request_id}"))


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
