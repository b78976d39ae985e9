"""`mugpos rules add|list|test|backtest`: manage plain-English rules from the terminal."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from control.console import console, load_or_exit
from core.rules import RuleSpecError, RuleSyntaxError, compile_rule, parse_rule
from core.rules.spec import RuleSpec

rules_app = typer.Typer(help="Write, test and back-test placement rules.", no_args_is_help=True)


def _parse_or_exit(sentence: str) -> RuleSpec:
    """The rule, or exit 2 with why not: not understood, over a size limit (RuleTooComplex) or
    not evaluable; never a traceback."""
    try:
        spec = parse_rule(sentence)
        compile_rule(spec, "draft")
        return spec
    except (RuleSyntaxError, RuleSpecError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


async def _with_db(work):
    from infra import mongo, redis_client
    from infra.rules_store import RuleCache, RulesRepository

    settings = load_or_exit()
    client = mongo.create_client(settings)
    redis = redis_client.create_client(settings)
    try:
        db = mongo.database(client, settings)
        await mongo.ensure_indexes(db)
        repository = RulesRepository(db)
        return await work(db, repository, RuleCache(repository, redis, settings.topic_prefix))
    finally:
        client.close()
        if redis is not None:
            await redis.aclose()


@rules_app.command()
def test(sentence: Annotated[str, typer.Argument(help="A rule in plain English.")]) -> None:
    """Parse a rule and show its structured form (nothing is stored)."""
    spec = _parse_or_exit(sentence)
    console.print_json(spec.model_dump_json(exclude_defaults=True))


@rules_app.command()
def add(
    sentence: Annotated[str, typer.Argument(help="A rule in plain English.")],
    user: Annotated[str, typer.Option(help="Recorded as the author.")] = "cli",
) -> None:
    """Store a new rule (version 1) and tell running workers to reload."""
    spec = _parse_or_exit(sentence)

    async def work(db, repository, cache):
        rule = await repository.create(spec, user)
        await cache.publish_change()
        return rule

    rule = asyncio.run(_with_db(work))
    console.print(f"added {rule.rule_id} version {rule.version}: {spec.name}")


@rules_app.command("list")
def list_rules() -> None:
    """The newest version of every rule."""
    rules = asyncio.run(_with_db(lambda db, repository, cache: repository.latest()))
    table = Table("rule", "version", "enabled", "severity", "rule text")
    for rule in rules:
        table.add_row(
            rule.rule_id,
            str(rule.version),
            str(rule.spec.enabled),
            rule.spec.severity,
            rule.spec.description or rule.spec.name,
        )
    console.print(table)


@rules_app.command()
def backtest(
    sentence: Annotated[str, typer.Argument(help="A draft rule in plain English.")],
    last: Annotated[int, typer.Option(min=1, help="How many recent results to use.")] = 500,
) -> None:
    """Evaluate a draft rule against the facts stored with recent results."""
    from core.rules.backtest import backtest as run
    from infra.results_history import recent_facts

    rule = compile_rule(_parse_or_exit(sentence), "draft")
    history = asyncio.run(_with_db(lambda db, repository, cache: recent_facts(db, last)))
    report = run(rule, history)
    console.print_json(json.dumps(asdict(report)))
