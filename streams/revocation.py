"""Run a hook when partitions are revoked, before Faust forgets what was acknowledged on them.

Faust's consumer drops its bookkeeping of the revoked partitions (acknowledged offsets, last
commit) first and only then calls the app's revocation handlers and signals. A commit made from
those handlers therefore leaves out every input acknowledged since the last periodic commit, and
the partitions' next owner redoes them (the drain test saw three results published three times).
The hook runs in front of that: while the bookkeeping is intact and the group still waits for
this member, so what it commits is exactly what the ledgers acknowledged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust
from faust.types import TP

RevocationHook = Callable[[set[TP]], Awaitable[None]]


def before_revocation(app: faust.App, hook: RevocationHook) -> None:
    """Call `hook(revoked)` at the start of every revocation, on the app's event loop."""
    consumer = app.consumer
    forget = consumer.on_partitions_revoked  # Faust's own: drops the bookkeeping, then the app's

    async def on_partitions_revoked(revoked: set[TP]) -> None:
        # What Faust does first in its own handler: no new input reaches an agent meanwhile.
        if consumer.assignment():
            consumer.stop_flow()
            app.flow_control.suspend()
            consumer.pause_partitions(consumer.assignment())
            app.flow_control.clear()
        await hook(revoked)
        await forget(revoked)

    consumer.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]
