"""`/api/v1/servers`: see every worker and steer it (pause, resume, drain, live settings, model,
rules). Commands are published on the control topic and acknowledged in the registry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from api.deps import audit, require, services
from api.problems import Problem, problem_responses
from api.routes import JsonRoute
from api.services import ApiServices
from core.access import Principal
from schemas.control import BROADCAST, LIVE_SETTINGS, MAX_BATCH_CEILING, Action, ControlCommand

router = APIRouter(prefix="/api/v1/servers", tags=["control plane"], route_class=JsonRoute)
Services = Annotated[ApiServices, Depends(services)]
ACK_WAIT_S = 5.0


# What `_check` below accepts, per action, stated in the document for clients (and schemathesis).
_PARAMS_BY_ACTION: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["action", "params"],
            "properties": {
                "action": {"const": "set"},
                "params": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "max_batch": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_BATCH_CEILING,
                        },
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                },
            },
        },
        {
            "required": ["action", "params"],
            "properties": {
                "action": {"const": "switch_model"},
                "params": {
                    "type": "object",
                    "required": ["model"],
                    "additionalProperties": False,
                    "properties": {"model": {"type": "string", "pattern": ":"}},
                },
            },
        },
        {
            "properties": {
                "action": {"enum": sorted(set(get_args(Action)) - {"set", "switch_model"})},
                "params": {"type": "object", "maxProperties": 0},
            },
        },
    ]
}


class CommandRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra=_PARAMS_BY_ACTION)

    action: Action
    # Strict: JSON `true` is no number here (pydantic would read it as 1).
    params: dict[str, StrictInt | StrictFloat | StrictStr] = Field(
        default_factory=dict,
        examples=[{"max_batch": 4}, {"confidence": 0.3}, {"model": "mugdet-synth:1.0.0"}],
    )

    @model_validator(mode="after")
    def _check(self) -> CommandRequest:
        if self.action == "set":
            unknown = set(self.params) - LIVE_SETTINGS
            if "max_wait_ms" in unknown:
                raise ValueError("max_wait_ms needs a worker restart (MUGPOS_MAX_WAIT_MS)")
            if not self.params or unknown:
                raise ValueError(f"set takes {sorted(LIVE_SETTINGS)}; got {sorted(self.params)}")
            batch = self.params.get("max_batch")
            if batch is not None:
                # 4.0 is an integer to JSON Schema (and so to clients generated from it).
                if (  # the range first: int() of NaN or infinity raises
                    isinstance(batch, str)
                    or not 1 <= batch <= MAX_BATCH_CEILING
                    or batch != int(batch)
                ):
                    raise ValueError(f"max_batch must be an integer from 1 to {MAX_BATCH_CEILING}")
                self.params["max_batch"] = int(batch)
            confidence = self.params.get("confidence")
            if confidence is not None and (isinstance(confidence, str) or not 0 <= confidence <= 1):
                raise ValueError("confidence must be a number from 0 to 1")
        elif self.action == "switch_model":
            model = str(self.params.get("model", ""))
            if set(self.params) != {"model"} or ":" not in model:
                raise ValueError("switch_model takes {'model': 'name:version'}")
        elif self.params:
            raise ValueError(f"{self.action} takes no params")
        return self


async def _lags(svc: ApiServices) -> dict[str, int]:
    try:
        lags = await svc.pipeline_lag()
    except Exception:  # the registry still answers without lag figures
        return {}
    return {f"{x.topic}:{x.partition}": x.lag for x in lags}


@router.get("")
async def list_servers(
    svc: Services, _: Annotated[Principal, Depends(require("read:servers"))]
) -> dict[str, Any]:
    """Every worker heard from in the last 10 minutes, totals, cost and a scaling hint."""
    return svc.registry.view(await _lags(svc))


@router.post(
    "/{worker_id}/commands", status_code=202, responses=problem_responses(unknown_worker=404)
)
async def send_command(
    worker_id: Annotated[
        str, Path(description="A worker's id, or `all` for every worker.", examples=["all"])
    ],
    body: CommandRequest,
    request: Request,
    svc: Services,
    who: Annotated[Principal, Depends(require("write:servers"))],
    wait: Annotated[bool, Query(description="Wait (up to 5 s) for the worker's ack.")] = True,
) -> dict[str, Any]:
    """A command for one worker, or for every worker with `worker_id` = `all`."""
    target = BROADCAST if worker_id == "all" else worker_id
    if target != BROADCAST and svc.registry.get(target) is None:
        raise Problem(404, f"no worker {worker_id} has reported", code="unknown_worker")
    command = ControlCommand(
        command_id=f"c-{uuid.uuid4().hex[:12]}",
        target=target,
        action=body.action,
        params=body.params,
        issued_by=who.subject,
        issued_at=datetime.now(UTC),
    )
    await svc.producer.send_and_wait(
        svc.topics.control,
        command.model_dump_json().encode(),
        key=f"command:{command.command_id}".encode(),
    )
    await audit(
        request,
        f"servers.{body.action}",
        worker_id,
        {"command_id": command.command_id, "params": body.params},
    )
    acks = await _acks(svc, command.command_id, target) if wait else {}
    return {
        "command_id": command.command_id,
        "target": worker_id,
        "issued_at": command.issued_at.isoformat(),
        "acks": acks,
    }


async def _acks(svc: ApiServices, command_id: str, target: str) -> dict[str, Any]:
    """Acks from the registry: the target's, or every live worker's for a broadcast."""
    deadline = asyncio.get_running_loop().time() + ACK_WAIT_S
    while True:
        view = svc.registry.view()["workers"]
        expected = [
            w for w in view if w["state"] != "lost" and target in (BROADCAST, w["worker_id"])
        ]
        acks = {
            w["worker_id"]: w["last_command"]
            for w in expected
            if (w.get("last_command") or {}).get("command_id") == command_id
        }
        if len(acks) == len(expected) or asyncio.get_running_loop().time() > deadline:
            return acks
        await asyncio.sleep(0.05)
