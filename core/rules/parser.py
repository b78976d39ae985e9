"""Plain English -> parse tree (lark, Earley) -> structured RuleSpec."""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError
from pydantic import ValidationError

from core.rules.errors import RuleSpecError, RuleSyntaxError
from core.rules.explain import duration
from core.rules.limits import check_limits
from core.rules.spec import Action, Group, Hold, Leaf, RuleSpec

EXAMPLES = (
    "Every mug must be on a coaster.",
    "Mugs must be at least 5 cm from the table edge.",
    "No mug within 10 cm of a laptop.",
    "At most 2 mugs per table.",
    "Handles should face right.",
    "Mugs must be inside the placement zone.",
    "Flag detections below 60% confidence for review.",
    "If a mug is off its coaster and within 3 cm of the edge, alert (critical).",
    "No mug off its coaster for more than 30 seconds (critical).",
)
_UNITS = {
    "inches": "in",
    "inch": "in",
    "pixels": "px",
    "centimeters": "cm",
    "centimetres": "cm",
    "millimeters": "mm",
    "millimetres": "mm",
}
_WORDS = {
    "MUG": "mug/cup",
    "HANDLE": "handles",
    "NUMBER": "a number",
    "UNIT": "a unit (cm, mm, in, px)",
    "EDGE": "edge",
    "HAZARD": "laptop/keyboard/phone/book",
    "COASTER": "coaster",
    "ZONE": "zone",
    "MODAL": "must/should",
    "QUANT": "every/each",
    "ARTICLE": "a/the",
    "DIRECTION": "left/right",
    "SEVERITY": "a severity (critical, high, warning, low)",
    "LIMIT": "at most/at least",
    "ALERT": "alert",
    "COMMA": "','",
    "DOT": "'.'",
    "LPAR": "'('",
    "RPAR": "')'",
    "PERCENT": "'%'",
    "FOR": "for (a time: for 30 seconds)",
    "LONGER": "at least/more than",
    "TIME_UNIT": "a time unit (seconds, minutes, hours, frames)",
}
# Seconds per time unit, by its first letter (TIME_UNIT spells each unit from it); "f" is frames.
_SECONDS = {"s": 1, "m": 60, "h": 3600}


@cache
def _parser() -> Lark:
    grammar = resources.files("core.rules").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="earley", lexer="dynamic", ambiguity="resolve")


def _leaf(
    fact: str, op: str, value: object, unit: str | None = None, target: str | None = None
) -> Leaf:
    return Leaf(fact=fact, op=op, value=value, unit=unit, target=target)  # type: ignore[arg-type]


def _singular(word: str) -> str:
    word = word.strip()
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


@v_args(inline=True)
class _ToSpec(Transformer):
    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    # targets -> (fact, target class)
    def edge_target(self, *_: Token) -> tuple[str, None]:
        return ("edge_distance", None)

    def hazard_target(self, hazard: Token) -> tuple[str, str]:
        name = _singular(str(hazard))
        return ("hazard_distance", "cell phone" if name == "phone" else name)

    def any_hazard(self) -> tuple[str, None]:
        return ("hazard_distance", None)

    def mug_target(self, *_: Token) -> tuple[str, None]:
        return ("mug_clearance", None)

    def distance(self, number: Token, unit: Token) -> tuple[float, str]:
        return (float(number), _UNITS.get(str(unit), str(unit)))

    def percentage(self, number: Token) -> float:
        return float(number) / 100

    # conditions
    def on_coaster(self, *_: Token) -> Leaf:
        return _leaf("on_coaster", "==", True)

    def off_coaster(self, *_: Token) -> Leaf:
        return _leaf("on_coaster", "==", False)

    def at_least(self, *args: object) -> Leaf:
        (value, unit), (fact, target) = [a for a in args if isinstance(a, tuple)]
        return _leaf(fact, ">=", value, unit, target)

    def within(self, *args: object) -> Leaf:
        (value, unit), (fact, target) = [a for a in args if isinstance(a, tuple)]
        return _leaf(fact, "<=", value, unit, target)

    def in_zone(self, *_: Token) -> Leaf:
        return _leaf("in_zone", "==", True)

    def outside_zone(self, *_: Token) -> Leaf:
        return _leaf("in_zone", "==", False)

    def faces(self, direction: Token) -> Leaf:
        return _leaf("handle", "==", str(direction))

    def negated(self, inner: Leaf | Group) -> Group:
        return Group(negate=True, conditions=[inner])

    def and_expr(self, *parts: Leaf | Group) -> Group:
        return Group(logic="all", conditions=list(parts))

    def or_expr(self, *parts: Leaf | Group) -> Group:
        return Group(logic="any", conditions=list(parts))

    # subjects and actions
    def mug_subject(self, _: Token) -> str:
        return "mug"

    def handle_subject(self, _: Token) -> str:
        return "handle"

    def negation(self) -> str:
        return "not"

    def severity(self, level: Token) -> str:
        return str(level)

    def hold(self, *args: Token) -> Hold:
        """The time clause as `Hold`; a number outside its range is refused here, at the number,
        rather than by pydantic at column 1 after the whole sentence was understood."""
        *longer, number, unit = args
        value = float(number)
        per = _SECONDS.get(str(unit)[0])
        strictly = bool(longer) and str(longer[0]) != "at least"
        try:
            if per is not None:  # "more than 30 s" is 30 s: frame times cannot tell them apart
                return Hold(seconds=value * per)
            if value.is_integer():  # "more than 3 frames" is 4: frames are counted
                return Hold(frames=int(value) + int(strictly))
        except ValidationError:
            pass  # outside Hold's range: said below, where the number is
        raise self._hold_error(number, frames=per is None)

    def _hold_error(self, number: Token, frames: bool) -> RuleSyntaxError:
        """Point at the number and state the range `Hold` accepts, read from its schema so the
        bounds are written down once (in spec.py)."""
        field = Hold.model_json_schema()["properties"]["frames" if frames else "seconds"]
        bounds = {key: bound for branch in field["anyOf"] for key, bound in branch.items()}
        wanted = (
            f"a whole number of frames from {bounds['minimum']} to {bounds['maximum']}"
            if frames
            else f"a time over {bounds['exclusiveMinimum']} s and up to "
            f"{duration(bounds['maximum'])}"
        )
        return RuleSyntaxError(self._text, number.column, [wanted], suggest(self._text))

    def alert(self, _: Token) -> Action:
        return Action(type="alert")

    def flag_review(self, *_: Token) -> Action:
        return Action(type="review")

    # sentences -> (type, scope, mode, conditions, actions)
    def _group(self, expr: Leaf | Group, negate: bool = False) -> Group:
        if isinstance(expr, Group) and not negate:
            return expr
        return Group(negate=negate, conditions=[expr])

    def requirement(self, *args: object) -> dict[str, object]:
        expr = args[-1]
        negate = "not" in args[:-1]
        return {
            "type": "requirement",
            "scope": "mug",
            "mode": "must_hold",
            "conditions": self._group(expr, negate),
        }  # type: ignore[arg-type]

    def prohibition(self, *args: object) -> dict[str, object]:
        return {
            "type": "prohibition",
            "scope": "mug",
            "mode": "must_hold",
            "conditions": self._group(args[-1], negate=True),
        }  # type: ignore[arg-type]

    def limit(self, kind: Token, number: Token, _: Token) -> dict[str, object]:
        at_most = str(kind) in ("at most", "no more than")
        leaf = _leaf(
            "mugs_per_table" if at_most else "min_mugs_per_table",
            "<=" if at_most else ">=",
            float(number),
        )
        return {
            "type": "limit",
            "scope": "scene",
            "mode": "must_hold",
            "conditions": Group(conditions=[leaf]),
        }

    def review(self, threshold: float) -> dict[str, object]:
        return {
            "type": "review",
            "scope": "detection",
            "mode": "flag_when",
            "conditions": Group(conditions=[_leaf("confidence", "<", threshold, "%")]),
            "actions": [Action(type="review")],
        }

    def conditional(self, *args: object) -> dict[str, object]:
        expr = next(a for a in args if isinstance(a, Leaf | Group))
        action = next(a for a in args if isinstance(a, Action))
        hold = next((a for a in args if isinstance(a, Hold)), None)
        severity = next(
            (
                a
                for a in args
                if isinstance(a, str) and not isinstance(a, Token) and a not in ("mug", "handle")
            ),
            None,
        )
        spec: dict[str, object] = {
            "type": "conditional",
            "scope": "mug",
            "mode": "flag_when",
            "conditions": self._group(expr),
            "actions": [action],
        }
        if severity:
            spec["severity"] = severity
        if hold is not None:
            spec["hold"] = hold
        return spec

    def sentence(self, body: dict[str, object], *suffix: Hold | str) -> dict[str, object]:
        for part in suffix:  # an optional hold, then an optional severity
            body["hold" if isinstance(part, Hold) else "severity"] = part
        return body

    def start(self, body: dict[str, object]) -> RuleSpec:
        text = self._text.strip()
        fields = {"name": text.rstrip(".")[:80], "description": text, **body}
        check_limits(fields)  # "not (not (...))" nests a group per "not": name the limit
        return RuleSpec(**fields)  # type: ignore[arg-type]


def suggest(sentence: str) -> str:
    """The supported example phrasing closest to what was written."""
    lowered = sentence.lower()
    return max(EXAMPLES, key=lambda e: difflib.SequenceMatcher(None, lowered, e.lower()).ratio())


def _expected(error: UnexpectedInput) -> list[str]:
    names = getattr(error, "expected", None) or getattr(error, "allowed", None) or set()
    words = set()
    for name in names:
        if name in _WORDS:
            words.add(_WORDS[name])
        elif name.startswith("__ANON") or name.isupper():
            continue
        else:
            words.add(name.lower())
    return sorted(words)


def parse_rule(sentence: str) -> RuleSpec:
    """Compile one plain-English sentence into a RuleSpec, or raise RuleSyntaxError (not
    understood) or RuleTooComplex (understood, but over a limit of `core.rules.limits`)."""
    text = sentence.strip()
    if not text:
        raise RuleSyntaxError(sentence, 1, ["a rule such as: " + EXAMPLES[0]], EXAMPLES[0])
    try:
        tree = _parser().parse(text.lower())
        return _ToSpec(text).transform(tree)
    except UnexpectedEOF as exc:
        raise RuleSyntaxError(text, len(text) + 1, _expected(exc), suggest(text)) from None
    except (UnexpectedCharacters, UnexpectedInput) as exc:
        column = getattr(exc, "column", None) or 1
        raise RuleSyntaxError(text, int(column), _expected(exc), suggest(text)) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, RuleSpecError | RuleSyntaxError):  # over a limit; a bad hold
            raise exc.orig_exc from None
        raise RuleSyntaxError(text, 1, [], suggest(text)) from exc.orig_exc
