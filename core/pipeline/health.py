"""Which dependencies a worker currently finds unavailable, as its stages report them.

A stage that rewinds because MongoDB (say) is down marks it down; the stage's next durable
outcome marks it up again. The worker reports itself `degraded` while anything is down, naming
what and since when, so an operator sees why results have stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class DependencyHealth:
    # (stage, dependency) -> monotonic time it was first seen down
    _down: dict[tuple[str, str], float] = field(default_factory=dict)
    outages: int = 0

    def down(self, stage: str, dependency: str) -> None:
        if (stage, dependency) not in self._down:
            self._down[(stage, dependency)] = time.monotonic()
            self.outages += 1

    def up(self, stage: str) -> None:
        for key in [k for k in self._down if k[0] == stage]:
            del self._down[key]

    @property
    def degraded(self) -> bool:
        return bool(self._down)

    def unavailable(self) -> dict[str, float]:
        """Each dependency that is down, with the seconds it has been down for."""
        now = time.monotonic()
        out: dict[str, float] = {}
        for (_, dependency), since in self._down.items():
            out[dependency] = max(out.get(dependency, 0.0), round(now - since, 1))
        return out
