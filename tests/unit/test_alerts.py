"""Alert events (core.alerts): raised on a change, not per frame; resolved when the rule passes
again, its mug is gone or its rule no longer alerts; a cooldown against flapping; the same events
again for a redelivered frame; one per picture where there is no source state. And what
core.webhooks signs, refuses and sends."""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.alerts import SCENE, Frame, alert_events
from core.rules import CompiledRule, Verdict, compile_rule, parse_rule
from core.rules.spec import Action, RuleSpec
from core.sources import SourceSpec
from core.tracking.state import SourceState, Track
from core.webhooks import body_of, refused_address, sign, verify

COOLDOWN = 300.0


def _rule(rule_id: str, sentence: str, *actions: Action) -> CompiledRule:
    spec = parse_rule(sentence).model_copy(update={"actions": list(actions)})
    return compile_rule(spec, rule_id)


COASTER = _rule(
    "coaster",
    "Every mug must be on a coaster.",
    Action(type="alert"),
    Action(type="webhook", params={"endpoint": "ops"}),
)
COUNT = _rule("count", "At most 2 mugs per table.", Action(type="alert"))
RULES = {r.rule_id: r for r in (COASTER, COUNT)}


def _verdict(rule: CompiledRule, passed: bool | None, subjects: tuple[int, ...] = ()) -> Verdict:
    return Verdict(
        rule_id=rule.rule_id,
        version=1,
        name=rule.spec.name,
        passed=passed,
        severity=rule.spec.severity,
        measured=None,
        threshold=None,
        unit=None,
        subjects=subjects,
        actions=tuple(a.type for a in rule.spec.actions),
        message="m",
    )


class Source:
    """Frames of one named source through alert_events, as the analysis stage applies them."""

    def __init__(self, tracks: tuple[str, ...] = ()) -> None:
        self.state = SourceState("cam-1")
        for t in tracks:
            self.state.tracks[t] = Track(t, (0, 0, 1, 1), 0.0, 0.0, 0)
        self.n = 0

    def frame(
        self,
        at: float,
        verdicts: list[Verdict],
        tracked: dict[int, str] | None = None,
        rules: dict[str, CompiledRule] = RULES,
    ) -> list[tuple[str, str, str]]:
        self.n += 1
        rid = f"f{self.n}"
        fresh = not self.state.seen(rid)
        self.state.remember(rid)
        events = alert_events(
            Frame("cam-1", rid, at),
            verdicts,
            rules,
            self.state,
            tracked,
            fresh=fresh,
            cooldown_s=COOLDOWN,
            source_webhooks=["room"],
        )
        return [(e.event, e.rule_id, e.subject) for e in events]


def test_a_failing_scene_raises_once_and_resolves_once() -> None:
    src = Source()
    assert src.frame(0, [_verdict(COUNT, False)]) == [("raised", "count", SCENE)]
    assert src.frame(5, [_verdict(COUNT, False)]) == []
    assert src.frame(10, [_verdict(COUNT, None)]) == [], "not applicable: nothing changes"
    assert src.frame(15, [_verdict(COUNT, True)]) == [("resolved", "count", SCENE)]
    assert src.frame(20, [_verdict(COUNT, True)]) == []


def test_the_cooldown_holds_back_a_flapping_alert_until_it_is_over() -> None:
    src = Source()
    events = []
    for i, passed in enumerate([False, True, False, True, False]):  # one frame a minute
        events += src.frame(i * 60, [_verdict(COUNT, passed)])
    assert events == [("raised", "count", SCENE), ("resolved", "count", SCENE)]
    assert src.frame(COOLDOWN, [_verdict(COUNT, False)]) == [("raised", "count", SCENE)]


def test_tracked_mugs_alert_each_on_their_own_and_a_gone_mug_resolves() -> None:
    src = Source(("t1", "t2"))
    both = {0: "t1", 1: "t2"}
    assert src.frame(0, [_verdict(COASTER, False, (1,))], both) == [("raised", "coaster", "t2")]
    assert src.frame(5, [_verdict(COASTER, False, (0, 1))], both) == [("raised", "coaster", "t1")]
    # t2 hidden (not in this frame's tracks, still in the state): its alert stays open.
    assert src.frame(10, [_verdict(COASTER, True)], {0: "t1"}) == [("resolved", "coaster", "t1")]
    del src.state.tracks["t2"]  # forgotten by the tracker
    assert src.frame(15, [_verdict(COASTER, True)], {0: "t1"}) == [("resolved", "coaster", "t2")]


def test_a_hidden_mug_failing_by_its_held_verdict_keeps_its_alert() -> None:
    """The picture passes (a hand hides the mug), so the verdict lists no actions; the rule's
    held verdict still fails: the alert stays open."""
    src = Source(("t1",))
    src.frame(0, [_verdict(COASTER, False, (0,))], {0: "t1"})
    held = replace(_verdict(COASTER, False), actions=(), instant_passed=True)
    assert src.frame(5, [held], {}) == []
    assert src.state.alerts["coaster/t1"].open


def test_a_rule_that_no_longer_alerts_resolves_its_open_alerts() -> None:
    src = Source()
    src.frame(0, [_verdict(COUNT, False)])
    silent = compile_rule(COUNT.spec.model_copy(update={"actions": []}), "count")
    assert src.frame(5, [_verdict(COUNT, False)], rules={"count": silent}) == [
        ("resolved", "count", SCENE)
    ]


def test_a_redelivered_frame_publishes_its_events_again_under_the_same_ids() -> None:
    src = Source()
    first = alert_events(
        Frame("cam-1", "f1", 0),
        [_verdict(COUNT, False)],
        RULES,
        src.state,
        None,
        fresh=True,
        cooldown_s=COOLDOWN,
    )
    src.state.remember("f1")
    again = alert_events(
        Frame("cam-1", "f1", 0),
        [_verdict(COUNT, False)],
        RULES,
        src.state,
        None,
        fresh=False,
        cooldown_s=COOLDOWN,
    )
    assert [e.alert_id for e in again] == [e.alert_id for e in first]
    assert len(first) == 1


def test_the_alert_state_round_trips_through_the_stored_document() -> None:
    src = Source()
    src.frame(0, [_verdict(COUNT, False)])
    stored = SourceState.from_dict(src.state.to_dict())
    assert stored.alerts == src.state.alerts
    src.state = stored
    assert src.frame(5, [_verdict(COUNT, True)]) == [("resolved", "count", SCENE)]


def test_a_picture_of_no_particular_source_alerts_alone_with_its_webhooks() -> None:
    events = alert_events(
        Frame("api", "req-1", 0),
        [_verdict(COASTER, False, (0,)), _verdict(COUNT, True)],
        RULES,
        None,
        None,
        fresh=False,
        cooldown_s=COOLDOWN,
        source_webhooks=["room", "ops"],
    )
    (event,) = events
    assert (event.event, event.subject, event.dedup_key) == ("raised", "req-1", "api/coaster/req-1")
    assert event.webhooks == ["ops", "room"], "the rule's endpoint, then the source's, once each"


def test_a_webhook_action_names_its_endpoint() -> None:
    with pytest.raises(ValidationError, match="names its endpoint"):
        Action(type="webhook", params={"url": "https://example.org/hook"})
    with pytest.raises(ValidationError, match="names its endpoint"):
        Action(type="webhook", params={"endpoint": "Not A Name"})
    schema = RuleSpec.model_json_schema()["$defs"]["Action"]
    assert schema["then"]["properties"]["params"]["required"] == ["endpoint"]
    with pytest.raises(ValidationError):
        SourceSpec.model_validate({"webhooks": ["UPPER"]})


def test_signatures_cover_the_timestamp_and_the_body() -> None:
    signature = sign("s3cret", 1700000000, b'{"a":1}')
    assert signature.startswith("v1=")
    assert verify("s3cret", 1700000000, b'{"a":1}', signature)
    assert not verify("s3cret", 1700000001, b'{"a":1}', signature)
    assert not verify("s3cret", 1700000000, b'{"a":2}', signature)
    assert not verify("other", 1700000000, b'{"a":1}', signature)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "private"),  # noqa: S104 - an address under test, not a bind
        ("224.0.0.1", "multicast"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_the_ssrf_guard_refuses_internal_addresses(address: str, kind: str | None) -> None:
    assert refused_address(ipaddress.ip_address(address), []) == kind


def test_an_allowed_network_lets_its_addresses_through() -> None:
    assert refused_address(ipaddress.ip_address("10.1.2.3"), ["10.1.0.0/16"]) is None
    assert refused_address(ipaddress.ip_address("10.2.2.3"), ["10.1.0.0/16"]) == "private"


def test_the_slack_body_says_what_happened_where() -> None:
    alert = {
        "event": "raised",
        "rule": "Every mug must be on a coaster.",
        "severity": "warning",
        "source_id": "cam-1",
        "subject": "t3",
        "message": "mug 0 is not on a coaster",
    }
    body = body_of(alert, "slack")
    assert "Every mug must be on a coaster." in body["text"]
    assert "cam-1 · t3" in body["text"]
    assert body_of(alert, "json") is alert


def test_the_readme_verification_example_accepts_our_signature_only() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(import hashlib.*?def verified.*?)```", readme, re.S)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - the README's own example, run as a reader would
    stamp, body = int(time.time()), b'{"event":"raised"}'
    headers = {"X-Mugpos-Timestamp": str(stamp), "X-Mugpos-Signature": sign("k", stamp, body)}
    assert namespace["verified"]("k", headers, body)
    assert not namespace["verified"]("k", headers, body + b" ")
    assert not namespace["verified"]("other", headers, body)
    old = {"X-Mugpos-Timestamp": "1000", "X-Mugpos-Signature": sign("k", 1000, body)}
    assert not namespace["verified"]("k", old, body), "a stale timestamp is refused"
