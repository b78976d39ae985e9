"""`mugpos rules …` against real MongoDB and Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from control.cli import app
from core.config import Settings, settings_env
from core.positioning import analyze
from core.positioning.serialize import facts_to_dict
from infra import mongo
from tests.unit.test_positioning import CALIBRATED, IMAGE, TABLE, coaster, mug


@pytest.fixture
def env(service_settings: Settings, tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return settings_env(service_settings)


def test_add_then_list(env: dict[str, str]) -> None:
    runner = CliRunner()
    added = runner.invoke(
        app, ["rules", "add", "At most 2 mugs per table.", "--user", "ann"], env=env
    )
    assert added.exit_code == 0, added.output
    assert "version 1" in added.output
    listed = runner.invoke(app, ["rules", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "At most 2 mugs per table." in listed.output


def test_add_refuses_a_sentence_it_cannot_understand(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["rules", "add", "Mugs near the edge"], env=env)
    assert result.exit_code == 2
    assert "closest supported phrasing" in result.output


def test_add_refuses_a_rule_over_a_limit_and_stores_nothing(
    env: dict[str, str], service_settings: Settings
) -> None:
    nested = "Every mug must be " + "not (" * 9 + "on a coaster" + ")" * 9 + "."
    result = CliRunner().invoke(app, ["rules", "add", nested], env=env)
    assert result.exit_code == 2, result.output
    assert "conditions nest 9 levels deep; the limit is 8" in result.output
    assert "Traceback" not in result.output

    async def count() -> int:
        client = mongo.create_client(service_settings)
        try:
            return await mongo.database(client, service_settings)[mongo.RULES].count_documents({})
        finally:
            client.close()

    assert asyncio.run(count()) == 0


def test_backtest_uses_stored_facts(env: dict[str, str], service_settings: Settings) -> None:
    good = facts_to_dict(analyze([TABLE, mug(100, 75), coaster(100, 75)], IMAGE, CALIBRATED))
    bad = facts_to_dict(analyze([TABLE, mug(22, 75)], IMAGE, CALIBRATED))
    now = datetime.now(UTC)

    async def seed() -> None:
        client = mongo.create_client(service_settings)
        db = mongo.database(client, service_settings)
        await db[mongo.ANALYSIS_RESULTS].insert_many(
            [
                {
                    "request_id": f"req-{i}",
                    "timestamp": now - timedelta(seconds=i),
                    "status": "ok",
                    "positioning": bad if i < 2 else good,
                }
                for i in range(6)
            ]
        )
        client.close()

    asyncio.run(seed())
    result = CliRunner().invoke(
        app, ["rules", "backtest", "Every mug must be on a coaster.", "--last", "4"], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["evaluated"], report["failed"], report["passed"]) == (4, 2, 2)
    assert report["failed_examples"] == ["req-0", "req-1"]
