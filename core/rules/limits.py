"""Size limits of a rule, checked on every write path and before any recursive validation.

Why: a rule is evaluated for every mug of every image by every worker, compiled into nested
closures, serialised into Redis (orjson stops at 255 levels) and answered by the API (pydantic
stops at a few hundred). A rule nested 200 groups deep passed validation and then broke all of
those. Real rules are a handful of comparisons two or three groups deep, so the limits below are
generous for people and tight enough that no limit of any library is ever reached.

`check_limits` walks the rule without recursion and accepts either a raw document (dicts and
lists, straight from a request body or MongoDB) or a built `RuleSpec`; it looks only at what it
understands and leaves type errors to pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.rules.errors import RuleSpecError

MAX_DEPTH = 8  # nested condition groups, the top-level group counting as 1
MAX_CONDITIONS = 64  # comparisons and groups, all levels together
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 2_000  # description, metadata values, action parameter values (webhook URLs)
MAX_VALUE_CHARS = 100  # strings inside a comparison: fact, value, target
MAX_KEY_CHARS = 64  # metadata and action parameter keys
MAX_ENTRIES = 16  # metadata entries; parameters per action
MAX_ACTIONS = 8

_LEAF_STRINGS = ("fact", "value", "target")


class RuleTooComplex(RuleSpecError):
    """A rule over one of the limits above; the message names the limit and the measured size."""

    code = "rule_too_complex"

    def __init__(self, limit: str, actual: int, maximum: int, message: str) -> None:
        super().__init__(message)
        self.limit, self.actual, self.maximum = limit, actual, maximum

    def as_dict(self) -> dict[str, object]:
        return {"limit": self.limit, "maximum": self.maximum, "actual": self.actual}


def _get(node: Any, name: str) -> Any:
    """A field of a raw document or of a pydantic model."""
    if isinstance(node, Mapping):
        return node.get(name)
    return getattr(node, name, None)


def _is_group(node: Any) -> bool:
    return isinstance(_get(node, "conditions"), list | tuple)


def _text(what: str, value: Any, maximum: int, limit: str) -> None:
    if isinstance(value, str) and len(value) > maximum:
        raise RuleTooComplex(
            limit, len(value), maximum, f"{what} is {len(value)} characters; the limit is {maximum}"
        )


def _mapping(what: str, value: Any, value_chars: int, limit: str) -> None:
    if not isinstance(value, Mapping):
        return
    if len(value) > MAX_ENTRIES:
        raise RuleTooComplex(
            limit,
            len(value),
            MAX_ENTRIES,
            f"{what} has {len(value)} entries; the limit is {MAX_ENTRIES}",
        )
    for key, item in value.items():
        _text(f"a {what} key", key, MAX_KEY_CHARS, f"{limit}_key_chars")
        _text(f"{what} value {str(key)[:MAX_KEY_CHARS]!r}", item, value_chars, f"{limit}_chars")


def _measure(root: Any) -> tuple[int, int]:
    """(depth, number of conditions) of a condition tree; checks leaf strings on the way."""
    depth, count = 0, 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        group, level = stack.pop()
        depth = max(depth, level)
        for condition in _get(group, "conditions"):
            count += 1
            if _is_group(condition):
                stack.append((condition, level + 1))
                continue
            for name in _LEAF_STRINGS:
                _text(
                    f"a condition's {name}", _get(condition, name), MAX_VALUE_CHARS, "value_chars"
                )
    return depth, count


def check_limits(rule: Any) -> None:
    """Raise RuleTooComplex when `rule` (raw document or RuleSpec) is over any limit."""
    if rule is None or isinstance(rule, str | bytes):
        return
    _text("the name", _get(rule, "name"), MAX_NAME_CHARS, "name_chars")
    _text("the description", _get(rule, "description"), MAX_TEXT_CHARS, "description_chars")
    _mapping("metadata", _get(rule, "metadata"), MAX_TEXT_CHARS, "metadata")
    actions = _get(rule, "actions")
    if isinstance(actions, list | tuple):
        if len(actions) > MAX_ACTIONS:
            raise RuleTooComplex(
                "actions",
                len(actions),
                MAX_ACTIONS,
                f"the rule has {len(actions)} actions; the limit is {MAX_ACTIONS}",
            )
        for action in actions:
            _mapping("action params", _get(action, "params"), MAX_TEXT_CHARS, "action_params")
    conditions = _get(rule, "conditions")
    if not _is_group(conditions):
        return
    depth, count = _measure(conditions)
    if depth > MAX_DEPTH:
        raise RuleTooComplex(
            "depth",
            depth,
            MAX_DEPTH,
            f"conditions nest {depth} levels deep; the limit is {MAX_DEPTH}",
        )
    if count > MAX_CONDITIONS:
        raise RuleTooComplex(
            "conditions",
            count,
            MAX_CONDITIONS,
            f"the rule has {count} conditions; the limit is {MAX_CONDITIONS}",
        )
