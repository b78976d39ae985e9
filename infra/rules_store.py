"""Rules in MongoDB with versions, cached in Redis and in process, invalidated through pub/sub.

Every edit writes a new version document (`rule_id`, `version`); nothing is overwritten, so the
history stays. The active rule set is the newest version of each rule that is enabled; its
version string is a digest of the (rule_id, version) pairs, so every worker that loads the same
rules reports the same rule-set version in its results.

One bad document cannot take the others down: a rule whose newest version cannot be read (written
before the size limits existed, or edited by hand) or compiled is left out of the listing and of
the active set, with a warning naming it. Its older versions are not used instead, since the newest
version is what its author meant to be in force. Writes refuse what the limits refuse.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import orjson
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from core.rules import CompiledRule, RuleSpec, check_limits, compile_rule
from infra.change_feed import ChangeFeed, cache_call
from infra.mongo import RULES

log = logging.getLogger(__name__)
T = TypeVar("T")
CACHE_TTL_S = 1800  # the original system's rules TTL


@dataclass(frozen=True, slots=True)
class StoredRule:
    rule_id: str
    version: int
    spec: RuleSpec
    created_at: datetime
    created_by: str

    def document(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "version": self.version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            **self.spec.model_dump(mode="json"),
        }

    @classmethod
    def from_document(cls, doc: dict) -> StoredRule:
        fields = {k: v for k, v in doc.items() if k in RuleSpec.model_fields}
        return cls(
            doc["rule_id"],
            int(doc["version"]),
            RuleSpec.model_validate(fields),
            doc["created_at"],
            doc.get("created_by", ""),
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: str
    rules: tuple[CompiledRule, ...]
    skipped: tuple[str, ...] = ()  # "rule_id@version" of rules left out: unreadable, uncompilable


def rule_set_version(rules: list[StoredRule]) -> str:
    pairs = ",".join(f"{r.rule_id}:{r.version}" for r in sorted(rules, key=lambda r: r.rule_id))
    return "rs-" + hashlib.sha256(pairs.encode()).hexdigest()[:12]


class RuleNotFound(LookupError):
    pass


class RuleUnreadable(ValueError):
    """A stored rule document that is not a valid rule; replacing it with a new version works."""

    def __init__(self, rule_id: object, version: object) -> None:
        super().__init__(
            f"rule {rule_id} version {version} is stored in a form that cannot be read; "
            "store a new version of it to replace it"
        )
        self.rule_id, self.version = rule_id, version


def _label(doc: dict) -> str:
    return f"{doc.get('rule_id', '?')}@{doc.get('version', '?')}"


def _load(doc: dict) -> StoredRule:
    """`StoredRule.from_document`, with any failure reported as RuleUnreadable (logged here with
    its cause, which may be long and internal)."""
    try:
        return StoredRule.from_document(doc)
    except Exception as exc:
        log.warning("skipping unreadable rule document %s: %s", _label(doc), type(exc).__name__)
        log.debug("rule document %s: %s", _label(doc), exc)
        raise RuleUnreadable(doc.get("rule_id"), doc.get("version")) from None


class RulesRepository:
    """Versioned rule documents in the `rules` collection."""

    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self._rules = db[RULES]

    async def create(self, spec: RuleSpec, user: str) -> StoredRule:
        check_limits(spec)  # again here: a RuleSpec built without validation skips its check
        compile_rule(spec, "check")  # refuse what cannot be evaluated before storing it
        rule = StoredRule(f"rule-{uuid.uuid4().hex[:12]}", 1, spec, datetime.now(UTC), user)
        await self._rules.insert_one(rule.document())
        return rule

    async def update(self, rule_id: str, spec: RuleSpec, user: str) -> StoredRule:
        """A new version; two concurrent edits cannot both take the same version number.

        Only the newest version number is read, so an unreadable newest version can be replaced.
        """
        check_limits(spec)
        compile_rule(spec, "check")
        for _ in range(5):
            current = await self._newest_version(rule_id)
            rule = StoredRule(rule_id, current + 1, spec, datetime.now(UTC), user)
            try:
                await self._rules.insert_one(rule.document())
                return rule
            except DuplicateKeyError:
                continue
        raise RuntimeError(f"rule {rule_id}: too many concurrent edits")

    async def disable(self, rule_id: str, user: str) -> StoredRule:
        current = await self.get(rule_id)
        return await self.update(rule_id, current.spec.model_copy(update={"enabled": False}), user)

    async def _newest_version(self, rule_id: str) -> int:
        doc = await self._rules.find_one(
            {"rule_id": rule_id}, {"version": 1}, sort=[("version", DESCENDING)]
        )
        if doc is None:
            raise RuleNotFound(f"no rule {rule_id}")
        try:
            return int(doc["version"])
        except (KeyError, TypeError, ValueError):
            raise RuleUnreadable(rule_id, doc.get("version")) from None

    async def get(self, rule_id: str, version: int | None = None) -> StoredRule:
        query: dict[str, object] = {"rule_id": rule_id}
        if version is not None:
            query["version"] = version
        doc = await self._rules.find_one(query, sort=[("version", DESCENDING)])
        if doc is None:
            raise RuleNotFound(f"no rule {rule_id}" + (f" version {version}" if version else ""))
        return _load(doc)

    async def history(self, rule_id: str) -> list[StoredRule]:
        docs = (
            await self._rules.find({"rule_id": rule_id}).sort("version", DESCENDING).to_list(None)
        )
        if not docs:
            raise RuleNotFound(f"no rule {rule_id}")
        return [_load(d) for d in docs]

    async def scan(self) -> tuple[list[StoredRule], list[str]]:
        """The newest version of every rule, enabled or not, and the `rule_id@version` of every
        rule whose newest version cannot be read (left out, logged)."""
        docs = (
            await self._rules.find({}).sort([("rule_id", 1), ("version", DESCENDING)]).to_list(None)
        )
        newest: dict[object, dict] = {}
        for doc in docs:
            newest.setdefault(doc.get("rule_id"), doc)
        rules: list[StoredRule] = []
        skipped: list[str] = []
        for doc in newest.values():
            try:
                rules.append(_load(doc))
            except RuleUnreadable:
                skipped.append(_label(doc))
        return rules, skipped

    async def latest(self) -> list[StoredRule]:
        """The newest version of every rule, enabled or not; unreadable ones left out."""
        return (await self.scan())[0]

    async def active(self) -> list[StoredRule]:
        return [r for r in await self.latest() if r.spec.enabled]


class RuleCache:
    """The active rule set for evaluation: L1 in process, L2 in Redis (TTL), source MongoDB.

    Writers call `publish_change()`; every process running `listen()` drops its L1 copy as soon as
    the message arrives, so a change reaches running workers well within a second.
    """

    def __init__(self, repository: RulesRepository, redis: Redis | None, prefix: str) -> None:
        self._repository = repository
        self._redis = redis
        self._key = f"{prefix}:rules:active"
        self._feed = ChangeFeed(redis, f"{prefix}:rules:changed", "rules")
        self._l1: RuleSet | None = None
        self._listeners: list[Callable[[RuleSet], None]] = []
        self.loads_from_db = 0

    async def rule_set(self) -> RuleSet:
        """The active rules, compiled; a rule that cannot be read or compiled is left out (and
        named in `RuleSet.skipped` and the log) instead of failing the whole set."""
        if self._l1 is not None:
            return self._l1
        skipped: list[str] = []
        rules = await self._from_redis()
        if rules is None:
            latest, skipped = await self._repository.scan()
            rules = [r for r in latest if r.spec.enabled]
            self.loads_from_db += 1
            if self._redis is not None:
                payload = orjson.dumps([r.document() for r in rules], default=str)
                await self._cache_call(self._redis.set(self._key, payload, ex=CACHE_TTL_S))
        compiled: list[CompiledRule] = []
        for rule in rules:
            try:
                compiled.append(compile_rule(rule.spec, rule.rule_id, rule.version))
            except Exception as exc:
                log.warning(
                    "skipping rule %s version %s: it does not compile (%s)",
                    rule.rule_id,
                    rule.version,
                    type(exc).__name__,
                )
                skipped.append(f"{rule.rule_id}@{rule.version}")
        in_force = {(c.rule_id, c.version) for c in compiled}
        self._l1 = RuleSet(
            rule_set_version([r for r in rules if (r.rule_id, r.version) in in_force]),
            tuple(compiled),
            tuple(skipped),
        )
        if skipped:
            log.warning("%d rule(s) left out of the active set: %s", len(skipped), skipped)
        for callback in self._listeners:
            callback(self._l1)
        return self._l1

    async def _from_redis(self) -> list[StoredRule] | None:
        """The shared copy, or None (read MongoDB) when there is none or it cannot be read."""
        if self._redis is None:
            return None
        raw = await self._cache_call(self._redis.get(self._key))
        if raw is None:
            return None
        try:
            docs = orjson.loads(raw)
            for doc in docs:
                doc["created_at"] = datetime.fromisoformat(doc["created_at"])
            return [StoredRule.from_document(d) for d in docs]
        except Exception as exc:  # only readable rules are written there; be safe anyway
            log.warning("ignoring the cached rule set in Redis: %s", type(exc).__name__)
            return None

    async def reload(self) -> RuleSet:
        """Read the rules from MongoDB now (an operator's `reload_rules`)."""
        self._l1 = None
        if self._redis is not None:
            await self._cache_call(self._redis.delete(self._key))
        return await self.rule_set()

    def on_change(self, callback: Callable[[RuleSet], None]) -> None:
        self._listeners.append(callback)

    async def publish_change(self) -> None:
        """After a write: drop the shared copy and tell every process to reload."""
        self._l1 = None
        if self._redis is not None:
            await self._cache_call(self._redis.delete(self._key))
            await self._feed.announce()

    async def _cache_call(self, call: Awaitable[T]) -> T | None:
        """A Redis call whose failure only costs speed: Redis is a cache, never a dependency."""
        return await cache_call(call, "rules cache")

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Run until cancelled: reload the rule set whenever a change is published. While Redis
        is away, resubscribe with backoff; a change missed meanwhile is read from MongoDB (the
        process's copy is dropped on every resubscription)."""
        await self._feed.follow(self._reload_now, self._drop, ready)

    async def _reload_now(self, _: bytes) -> None:
        self._l1 = None
        await self.rule_set()
        log.info("rules changed; now %s", self._l1.version if self._l1 else None)

    def _drop(self) -> None:
        self._l1 = None
