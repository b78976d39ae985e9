"""Login throttling per (account, client IP): password guessing slows down exponentially, while
the account's owner, logging in from anywhere else, is never locked out by it.

Each attempt is counted before its password is checked (and the count dropped when it proves
right), so a burst of parallel guesses cannot all slip in before the first failure is recorded.
From the MUGPOS_LOGIN_FREE_FAILURES-th failure on, each one starts a delay (base, 2 x base, ... up
to MUGPOS_LOGIN_DELAY_MAX_S) during which attempts are refused without checking anything; the
delay is started when the attempt is counted and again when its password proves wrong, so it runs
in full after the (slow) check. A refused attempt neither counts nor extends the delay. The count is forgotten after a quiet period
as long as the longest delay.

The state lives in Redis (one atomic script per attempt), so every API process sees the same
delays. When Redis fails, the throttle fails open *to a per-process copy of the same policy*, not
to no throttle: refusing every login (fail closed) would turn any Redis outage, or anyone able to
disturb Redis, into a lock-out of every user, including the admins needed to fix it; letting every
guess through would leave only the argon2 cost (the IP rate limit shares Redis and fails open too).
Per process, a guesser gets at most the free failures once per API process before the delays.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.config import Settings

log = logging.getLogger(__name__)

# KEYS: failure count, delay marker (its TTL is the running delay).
# ARGV: free failures, quiet period ms, then the delay in ms after each failure from the
# free-th on (the last one repeats).
_ATTEMPT = """
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return {wait, 0, 0} end
local failures = redis.call('INCR', KEYS[1])
local free = tonumber(ARGV[1])
local delay = 0
if failures >= free then
  delay = tonumber(ARGV[math.min(failures - free + 3, #ARGV)])
  redis.call('SET', KEYS[2], '1', 'PX', delay)
end
redis.call('PEXPIRE', KEYS[1], delay + tonumber(ARGV[2]))
return {0, failures, delay}
"""
_MEMORY_MAX = 100_000


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    free_failures: int
    base_ms: int
    max_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        base = max(1, round(settings.login_delay_base_s * 1000))
        return cls(
            settings.login_free_failures, base, max(base, round(settings.login_delay_max_s * 1000))
        )

    def delays_ms(self) -> list[int]:
        """The delay after the free-th failure, the next one, ... until the maximum."""
        delays = [self.base_ms]
        while delays[-1] < self.max_ms:
            delays.append(min(self.max_ms, delays[-1] * 2))
        return delays

    def delay_ms(self, failures: int) -> int:
        if failures < self.free_failures:
            return 0
        delays = self.delays_ms()
        return delays[min(failures - self.free_failures, len(delays) - 1)]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt: refused while a delay runs, else counted as a failure until it succeeds."""

    retry_after_s: float = 0.0  # > 0: refused, nothing checked
    failures: int = 0  # this one included
    delay_s: float = 0.0  # the delay this attempt started; lifted when it succeeds

    @property
    def refused(self) -> bool:
        return self.retry_after_s > 0

    @property
    def retry_after(self) -> int:
        """Whole seconds for a Retry-After header, never less than the delay left."""
        return max(1, math.ceil(self.retry_after_s))


class LoginThrottle:
    def __init__(self, redis: Redis | None, prefix: str, policy: LoginPolicy) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_ATTEMPT) if redis is not None else None
        self._quiet_ms = policy.max_ms  # how long a count outlives its delay
        self._args = [policy.free_failures, self._quiet_ms, *policy.delays_ms()]
        self._memory = _MemoryThrottle(policy)

    async def attempt(self, account: str, ip: str) -> Attempt:
        """Refuse this attempt while a delay runs, else count it as a failure."""
        key = self._key(account, ip)
        if self._script is not None:
            try:
                wait, failures, delay = await self._script(keys=list(key), args=self._args)
                return Attempt(wait / 1000, failures, delay / 1000)
            except (RedisError, OSError) as exc:
                log.warning("login throttle: Redis unavailable, throttling in process: %s", exc)
        return self._memory.attempt(key[0])

    async def failed(self, account: str, ip: str, attempt: Attempt) -> None:
        """The password was wrong: the delay the attempt started runs from now."""
        if not attempt.delay_s:
            return
        failures, delay = self._key(account, ip)
        delay_ms = round(attempt.delay_s * 1000)
        self._memory.restart(failures, delay_ms)
        if self._redis is not None:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.set(delay, 1, px=delay_ms)
                    pipe.pexpire(failures, delay_ms + self._quiet_ms)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("login throttle: Redis unavailable, delay not restarted: %s", exc)

    async def succeeded(self, account: str, ip: str) -> None:
        """The password was right: forget the failures and lift the delay the attempt started."""
        key = self._key(account, ip)
        self._memory.forget(key[0])
        if self._redis is not None:
            try:
                await self._redis.delete(*key)
            except (RedisError, OSError) as exc:
                log.warning("login throttle: Redis unavailable, failures not reset: %s", exc)

    def _key(self, account: str, ip: str) -> tuple[str, str]:
        # Hashed: fixed length whatever the name, no separator ambiguity, no names kept in Redis.
        # The hash tag keeps both keys in one Redis Cluster slot for the script.
        digest = hashlib.sha256(f"{account}\n{ip}".encode()).hexdigest()[:32]
        base = f"{self._prefix}:login:{{{digest}}}"
        return f"{base}:failures", f"{base}:delay"


class _MemoryThrottle:
    """The same policy in this process: without Redis (embedded demo) and while Redis fails."""

    def __init__(self, policy: LoginPolicy) -> None:
        self._policy = policy
        # key -> (failures, delay ends, forgotten at), monotonic seconds
        self._state: dict[str, tuple[int, float, float]] = {}

    def attempt(self, key: str) -> Attempt:
        now = time.monotonic()
        failures, delay_ends, forget_at = self._state.pop(key, (0, 0.0, 0.0))
        if forget_at <= now:
            failures, delay_ends = 0, 0.0
        if delay_ends > now:
            self._state[key] = (failures, delay_ends, forget_at)
            return Attempt(retry_after_s=delay_ends - now)
        failures += 1
        delay_ms = self._policy.delay_ms(failures)
        self._arm(key, failures, delay_ms)
        self._trim(now)
        return Attempt(failures=failures, delay_s=delay_ms / 1000)

    def restart(self, key: str, delay_ms: int) -> None:
        if key in self._state:
            self._arm(key, self._state[key][0], delay_ms)

    def _arm(self, key: str, failures: int, delay_ms: int) -> None:
        delay_ends = time.monotonic() + delay_ms / 1000
        self._state[key] = (failures, delay_ends, delay_ends + self._policy.max_ms / 1000)

    def forget(self, key: str) -> None:
        self._state.pop(key, None)

    def _trim(self, now: float) -> None:
        """Bounded memory: drop forgotten entries, then the least recently tried."""
        if len(self._state) <= _MEMORY_MAX:
            return
        live = [(k, v) for k, v in self._state.items() if v[2] > now]
        self._state = dict(live[-_MEMORY_MAX:])
