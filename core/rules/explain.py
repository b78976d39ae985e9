"""A rule's structured form read back as one line, so a user can confirm what was understood."""

from __future__ import annotations

from core.rules.spec import Group, Hold, Leaf, RuleSpec

_OPS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "is", "!=": "is not"}
_SUBJECT = {"mug": "every mug", "scene": "the scene", "detection": "every detection"}


def _leaf(leaf: Leaf) -> str:
    fact = leaf.fact.replace("_", " ")
    if leaf.target:
        fact += f" ({leaf.target})"
    if isinstance(leaf.value, bool):
        value = str(leaf.value).lower()
    elif isinstance(leaf.value, float) and leaf.unit == "%":
        value = f"{leaf.value * 100:g}"  # stored as a fraction
    elif isinstance(leaf.value, float):
        value = f"{leaf.value:g}"
    else:
        value = str(leaf.value)
    unit = "%" if leaf.unit == "%" else f" {leaf.unit}" if leaf.unit else ""
    return f"{fact} {_OPS[leaf.op]} {value}{unit}"


def _group(group: Group) -> str:
    joined = f" {'and' if group.logic == 'all' else 'or'} ".join(
        _leaf(c) if isinstance(c, Leaf) else f"({_group(c)})" for c in group.conditions
    )
    return f"not ({joined})" if group.negate else joined


def duration(seconds: float) -> str:
    """Seconds in the largest unit that divides them evenly: a rule says "2 minutes", not 120 s."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _hold(hold: Hold | None) -> str:
    """The hold as a trailing clause, so a user sees a verdict will wait before it changes."""
    if hold is None:
        return ""
    if hold.seconds is not None:
        return f", once it has held for {duration(hold.seconds)}"
    return f", once it has held for {hold.frames} frame{'' if hold.frames == 1 else 's'}"


def explain(spec: RuleSpec) -> str:
    verb = "must satisfy" if spec.mode == "must_hold" else "is flagged when"
    actions = ", ".join(a.type for a in spec.actions)
    then = f"; then: {actions}" if actions else ""
    return (
        f"{_SUBJECT[spec.scope]} {verb}: {_group(spec.conditions)} [{spec.severity}]"
        f"{_hold(spec.hold)}{then}"
    )
