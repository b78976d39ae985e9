"""What an operator reads when a worker cannot apply a command: its own refusal reasons in full,
anything else in fixed words (the exception's text stays in the worker's log)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from agents.control import WorkerControl
from core.models.manager import ModelMismatchError
from schemas.control import BROADCAST, ControlCommand


class _Rules:
    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    async def reload(self) -> None:
        raise self.failure


async def _ack(failure: Exception) -> str | None:
    # The control plane's own parts around the command are not under test: a context holding
    # only the rule cache the command reaches, and no heartbeat to publish.
    control = WorkerControl(SimpleNamespace(), SimpleNamespace(rules=_Rules(failure)), [])

    async def no_beat() -> None:
        return None

    control.beat = no_beat  # type: ignore[method-assign]
    command = ControlCommand(
        command_id="c-1",
        target=BROADCAST,
        action="reload_rules",
        issued_by="ops",
        issued_at=datetime.now(UTC),
    )
    await control.on_message(b"command:c-1", command.model_dump_json().encode())
    assert control.last_command is not None
    assert control.last_command.ok is False
    return control.last_command.reason


async def test_an_unexpected_failure_is_reported_in_fixed_words() -> None:
    reason = await _ack(RuntimeError("pymongo internals at 0x7f3a"))
    assert reason == "the worker could not apply reload_rules; the reason is in its log"


@pytest.mark.parametrize("failure", [ModelMismatchError("set MUGPOS_MODEL and restart")])
async def test_a_refusal_for_the_operator_keeps_its_reason(failure: Exception) -> None:
    assert await _ack(failure) == str(failure)
