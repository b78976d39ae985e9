"""Rules: plain English or JSON in, versioned documents out; parse and back-test before saving.

A rule over a size limit of `core.rules.limits` is refused with 422 `rule_too_complex` naming the
limit, whether it comes as text or JSON; a JSON rule is refused while the body is validated (the
limits are checked before the nested conditions are), which `api.problems` answers the same way.
A stored rule that cannot be read is left out of the listing and answers 409 `rule_unreadable`
when asked for by id; storing a new version of it (PUT) replaces it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import audit, require, services
from api.problems import Problem, problem_responses
from api.routes import JsonRoute, links
from api.services import ApiServices
from core.access import Principal
from core.rules import (
    RuleSpec,
    RuleSpecError,
    RuleSyntaxError,
    RuleTooComplex,
    check_limits,
    compile_rule,
    parse_rule,
)
from core.rules.backtest import backtest
from core.rules.explain import explain
from infra.results_history import recent_facts
from infra.rules_store import RuleNotFound, RuleUnreadable, StoredRule

router = APIRouter(prefix="/api/v1/rules", tags=["rules"], route_class=JsonRoute)
_ONE = f"{router.prefix}/{{rule_id}}"
Services = Annotated[ApiServices, Depends(services)]
# A version number as MongoDB can hold it (a signed 64-bit integer): a larger one is a 422, not
# an OverflowError while encoding the query.
Version = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


class RuleInput(BaseModel):
    """Either `text` (plain English) or `rule` (the structured form)."""

    # The document states the check below, so that clients (and schemathesis) know it: exactly
    # one of the two is present and not null.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
                {"required": ["rule"], "properties": {"rule": {"type": "object"}}},
            ]
        }
    )

    text: str | None = Field(
        None, min_length=1, max_length=500, examples=["Every mug must be on a coaster."]
    )
    rule: RuleSpec | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RuleInput:
        if (self.text is None) == (self.rule is None):
            raise ValueError("give exactly one of `text` or `rule`")
        return self


class ParsedRule(BaseModel):
    rule: RuleSpec
    explanation: str


class RuleOut(BaseModel):
    rule_id: str
    version: int
    created_at: str
    created_by: str
    rule: RuleSpec
    explanation: str


def _spec(body: RuleInput) -> RuleSpec:
    try:
        spec = parse_rule(body.text) if body.text is not None else body.rule
        assert spec is not None
        check_limits(spec)
        compile_rule(spec, "check")
        return spec
    except RuleSyntaxError as exc:
        raise Problem(422, str(exc), code="rule_syntax", **exc.as_dict()) from None
    except RuleTooComplex as exc:
        raise _too_complex(exc) from None
    except RuleSpecError as exc:
        raise Problem(422, str(exc), code="rule_invalid") from None


def _too_complex(exc: RuleTooComplex) -> Problem:
    return Problem(422, str(exc), code=exc.code, **exc.as_dict())


# What a rule in a body can be refused for, beyond its JSON shape (`_spec`).
_RULE_CODES = {"rule_syntax": 422, "rule_too_complex": 422, "rule_invalid": 422}


def _unreadable(exc: RuleUnreadable) -> Problem:
    return Problem(409, str(exc), code="rule_unreadable", rule_id=exc.rule_id)


def _out(rule: StoredRule) -> RuleOut:
    return RuleOut(
        rule_id=rule.rule_id,
        version=rule.version,
        created_at=rule.created_at.isoformat(),
        created_by=rule.created_by,
        rule=rule.spec,
        explanation=explain(rule.spec),
    )


async def _changed(svc: ApiServices, request: Request, action: str, rule: StoredRule) -> None:
    """Workers reload within a second; live subscribers and the audit log hear of it."""
    await svc.rule_cache.publish_change()
    svc.hub.publish_event(
        {"type": "rules.changed", "data": {"rule_id": rule.rule_id, "version": rule.version}}
    )
    await audit(request, action, f"{rule.rule_id}@{rule.version}")


async def _get(svc: ApiServices, rule_id: str, version: int | None = None) -> StoredRule:
    try:
        return await svc.rules.get(rule_id, version)
    except RuleNotFound as exc:
        raise Problem(404, str(exc), code="unknown_rule") from None
    except RuleUnreadable as exc:
        raise _unreadable(exc) from None


@router.post("/parse", response_model=ParsedRule, responses=problem_responses(**_RULE_CODES))
async def parse(
    body: RuleInput, _: Annotated[Principal, Depends(require("read:rules"))]
) -> ParsedRule:
    """What a sentence compiles to (nothing is stored), or where and why it does not parse."""
    spec = _spec(body)
    return ParsedRule(rule=spec, explanation=explain(spec))


@router.get("", response_model=list[RuleOut])
async def list_rules(
    svc: Services, _: Annotated[Principal, Depends(require("read:rules"))]
) -> list[RuleOut]:
    """The newest version of every rule, enabled or not (a stored rule that cannot be read is
    left out and logged, so that one bad document cannot break the listing for everyone)."""
    return [_out(r) for r in await svc.rules.latest()]


@router.post(
    "",
    status_code=201,
    response_model=RuleOut,
    responses={
        201: {
            "links": links(
                "rule_id",
                GetRule=("GET", _ONE),
                RuleVersions=("GET", f"{_ONE}/versions"),
                UpdateRule=("PUT", _ONE),
                DisableRule=("DELETE", _ONE),
                BacktestRule=("POST", f"{_ONE}/backtest"),
            )
        },
        **problem_responses(**_RULE_CODES),
    },
)
async def create_rule(
    body: RuleInput,
    request: Request,
    svc: Services,
    who: Annotated[Principal, Depends(require("write:rules"))],
) -> RuleOut:
    rule = await svc.rules.create(_spec(body), who.subject)
    await _changed(svc, request, "rules.create", rule)
    return _out(rule)


@router.get(
    "/{rule_id}",
    response_model=RuleOut,
    responses=problem_responses(unknown_rule=404, rule_unreadable=409),
)
async def get_rule(
    rule_id: str,
    svc: Services,
    _: Annotated[Principal, Depends(require("read:rules"))],
    version: Version = None,
) -> RuleOut:
    return _out(await _get(svc, rule_id, version))


@router.get(
    "/{rule_id}/versions",
    response_model=list[RuleOut],
    responses=problem_responses(unknown_rule=404, rule_unreadable=409),
)
async def rule_versions(
    rule_id: str, svc: Services, _: Annotated[Principal, Depends(require("read:rules"))]
) -> list[RuleOut]:
    try:
        return [_out(r) for r in await svc.rules.history(rule_id)]
    except RuleNotFound as exc:
        raise Problem(404, str(exc), code="unknown_rule") from None
    except RuleUnreadable as exc:
        raise _unreadable(exc) from None


@router.put(
    "/{rule_id}",
    response_model=RuleOut,
    responses=problem_responses(unknown_rule=404, **_RULE_CODES),
)
async def update_rule(
    rule_id: str,
    body: RuleInput,
    request: Request,
    svc: Services,
    who: Annotated[Principal, Depends(require("write:rules"))],
) -> RuleOut:
    """A new version; earlier versions stay readable. Also replaces an unreadable rule."""
    spec = _spec(body)
    try:
        rule = await svc.rules.update(rule_id, spec, who.subject)
    except RuleNotFound as exc:
        raise Problem(404, str(exc), code="unknown_rule") from None
    await _changed(svc, request, "rules.update", rule)
    return _out(rule)


@router.delete(
    "/{rule_id}",
    response_model=RuleOut,
    responses=problem_responses(unknown_rule=404, rule_unreadable=409),
)
async def disable_rule(
    rule_id: str,
    request: Request,
    svc: Services,
    who: Annotated[Principal, Depends(require("delete:rules"))],
) -> RuleOut:
    """Disables the rule (a new, disabled version); history is kept."""
    await _get(svc, rule_id)
    rule = await svc.rules.disable(rule_id, who.subject)
    await _changed(svc, request, "rules.disable", rule)
    return _out(rule)


@router.post(
    "/{rule_id}/backtest",
    responses=problem_responses(unknown_rule=404, rule_unreadable=409, rule_invalid=422),
)
async def backtest_rule(
    rule_id: str,
    svc: Services,
    _: Annotated[Principal, Depends(require("read:rules"))],
    last: Annotated[int, Query(ge=1, le=10_000)] = 500,
    version: Version = None,
) -> dict[str, Any]:
    """Pass/fail counts of the rule over the facts stored with the last `last` results."""
    rule = await _get(svc, rule_id, version)
    try:
        compiled = compile_rule(rule.spec, rule.rule_id)
    except RuleSpecError as exc:  # stored before the check, or by hand
        raise Problem(422, str(exc), code="rule_invalid") from None
    report = backtest(compiled, await recent_facts(svc.db, last))
    return asdict(report) | {"rule_id": rule.rule_id, "version": rule.version}
