"""The structured form of a rule, as stored in MongoDB's `rules` collection and accepted as JSON.

Plain-English rules compile into this form; JSON rules are validated against it directly. The size
limits of `core.rules.limits` are checked on the raw input before the recursive `Group` model is
validated, so an oversized rule is refused with the limit named instead of running into pydantic's
own recursion limits (see that module for why).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StringConstraints,
    model_validator,
)

from core.rules.limits import check_limits
from core.webhooks import ENDPOINT_NAME_PATTERN

Op = Literal["<", "<=", ">", ">=", "==", "!="]
Unit = Literal["cm", "mm", "in", "px", "%"]
Severity = Literal["info", "low", "warning", "medium", "high", "critical"]
# A key MongoDB can store: BSON forbids NUL in key names (the document would not be written).
_KEY_PATTERN = r"^[^\x00]*$"
Key = Annotated[str, StringConstraints(pattern=_KEY_PATTERN)]
_KEYS_SCHEMA = {"propertyNames": {"pattern": _KEY_PATTERN}}  # pydantic states values only

# What a condition can look at, per scope. Distances are in cm, confidences 0..1.
MUG_FACTS = {
    "on_coaster": bool,
    "edge_distance": float,
    "hazard_distance": float,
    "mug_clearance": float,
    "in_zone": bool,
    "handle": str,
    "confidence": float,
    "score": float,
}
SCENE_FACTS = {
    "mugs_per_table": float,  # the fullest table
    "min_mugs_per_table": float,  # the emptiest table
    "mug_count": float,
    "unmatched_coasters": float,
}
DETECTION_FACTS = {"confidence": float}
FACTS = {"mug": MUG_FACTS, "scene": SCENE_FACTS, "detection": DETECTION_FACTS}


class Leaf(BaseModel):
    """One comparison: `fact op value` (`target` narrows hazard_distance to one class)."""

    fact: str
    op: Op
    # Finite: NaN compares false with everything and ±Infinity with nothing useful, so a rule
    # holding one would pass or fail every mug whatever it meant (and JSON cannot carry it back).
    value: FiniteFloat | bool | str
    unit: Unit | None = None
    target: str | None = None


class Group(BaseModel):
    logic: Literal["all", "any"] = "all"
    negate: StrictBool = False  # strict: `0` or `"no"` is no boolean, as the schema says
    conditions: list[Annotated[Leaf | Group, Field(union_mode="left_to_right")]]


class Action(BaseModel):
    """What a failing rule does besides its verdict. `alert` and `webhook` raise alert events
    (core.alerts); a `webhook` action also names the endpoint that receives them
    (`params.endpoint`, registered with PUT /api/v1/webhooks/{name})."""

    # The document states the check below, so that clients know it (as Hold does).
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"type": {"const": "webhook"}}},
            "then": {
                "required": ["params"],
                "properties": {
                    "params": {
                        "required": ["endpoint"],
                        "properties": {
                            "endpoint": {"type": "string", "pattern": ENDPOINT_NAME_PATTERN}
                        },
                    }
                },
            },
        }
    )

    type: Literal["alert", "review", "webhook", "tag"]
    params: dict[Key, str] = Field(default_factory=dict, json_schema_extra=_KEYS_SCHEMA)

    @model_validator(mode="after")
    def _names_its_endpoint(self) -> Action:
        if self.type == "webhook" and not re.fullmatch(
            ENDPOINT_NAME_PATTERN, self.params.get("endpoint", "")
        ):
            raise ValueError(
                "a webhook action names its endpoint: params.endpoint, lower-case letters, "
                "digits, '.', '_' or '-'"
            )
        return self


# A tag a source can select rules by (`SourceSpec.rules`): short, lower case, no spaces.
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$")]


def _not_a_bool(value: Any) -> Any:
    """`true` is no count of frames (Python's bool is an int; JSON's is not a number)."""
    if isinstance(value, bool):
        raise ValueError("a whole number of frames, not true or false")
    return value


class Hold(BaseModel):
    """How long a changed verdict must last before it counts (hysteresis and dwell time).

    On a source's tracked mugs (or its scene), a verdict turns from pass to fail, or back, only
    after the new outcome held for `seconds` of frame time or for `frames` consecutive frames; a
    mug off its coaster for 10 s under a 30 s hold still passes. Exactly one of the two is set.
    """

    # The document states the check below, so that clients know it (as RuleInput does).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["seconds"], "properties": {"seconds": {"type": "number"}}},
                {"required": ["frames"], "properties": {"frames": {"type": "integer"}}},
            ]
        },
    )

    seconds: Annotated[FiniteFloat, Field(gt=0, le=86_400, strict=True)] | None = None
    frames: Annotated[int, Field(ge=1, le=1_000), BeforeValidator(_not_a_bool)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Hold:
        if (self.seconds is None) == (self.frames is None):
            raise ValueError("a hold sets exactly one of seconds and frames")
        return self


class RuleSpec(BaseModel):
    """A rule: for every subject in `scope`, `conditions` must hold (`must_hold`), or the subject
    is flagged when they hold (`flag_when`); with `hold`, only once the outcome has lasted."""

    name: str
    description: str = ""
    type: Literal["requirement", "prohibition", "limit", "conditional", "review"]
    scope: Literal["mug", "scene", "detection"]
    mode: Literal["must_hold", "flag_when"]
    conditions: Group
    severity: Severity = "warning"
    actions: list[Action] = Field(default_factory=list)
    enabled: StrictBool = True
    metadata: dict[Key, str] = Field(default_factory=dict, json_schema_extra=_KEYS_SCHEMA)
    hold: Hold | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=16)

    @model_validator(mode="before")
    @classmethod
    def _within_limits(cls, data: Any) -> Any:
        check_limits(data)  # RuleTooComplex is a ValueError: pydantic reports it, cause attached
        return data
