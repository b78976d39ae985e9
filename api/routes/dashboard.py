"""One summary for the operator's dashboard: throughput, latency per stage, lag, failures."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query

from api.deps import require, services
from api.services import ApiServices
from core.access import Principal
from infra.results_history import recent_results

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])
Services = Annotated[ApiServices, Depends(services)]
MAX_RESULTS = 20_000


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(p50, 2), "p95": round(p95, 2), "p99": round(p99, 2), "n": len(values)}


async def _lag(svc: ApiServices) -> list[dict[str, Any]] | str:
    try:
        lags = await svc.pipeline_lag()
    except Exception as exc:  # the dashboard reports a broker problem, it does not fail on it
        return f"unavailable: {type(exc).__name__}: {exc}"
    return [
        {
            "topic": x.topic,
            "partition": x.partition,
            "committed": x.committed,
            "end": x.end,
            "lag": x.lag,
        }
        for x in lags
    ]


@router.get("/summary")
async def summary(
    svc: Services,
    _: Annotated[Principal, Depends(require("read:dashboard"))],
    window_s: Annotated[int, Query(ge=10, le=86_400, description="Seconds to summarise.")] = 300,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    results = [
        r
        for r in await recent_results(svc.db, now - timedelta(seconds=window_s), MAX_RESULTS)
        if r.get("status") != "pending"
    ]
    stages: dict[str, list[float]] = {}
    for result in results:
        for stage, ms in (result.get("timings_ms") or {}).items():
            if stage != "batch_size":
                stages.setdefault(stage, []).append(ms)
    failures = Counter(
        (r.get("error") or {}).get("reason", "unknown")
        for r in results
        if r.get("status") in ("rejected", "failed")
    )
    models = Counter(
        f"{r['model']['name']}:{r['model']['version']}" for r in results if r.get("model")
    )
    hit_rate = svc.metrics.cache_hit_rate()
    return {
        "window_s": window_s,
        "generated_at": now.isoformat(),
        "results": len(results),
        "throughput_per_s": round(len(results) / window_s, 3),
        "by_status": dict(Counter(r.get("status") for r in results)),
        "latency_ms": {
            "total": _percentiles(
                [r["latency_ms"] for r in results if r.get("latency_ms") is not None]
            ),
            **{stage: _percentiles(values) for stage, values in sorted(stages.items())},
        },
        "consumer_lag": await _lag(svc),
        "dead_letters_by_reason": dict(failures),
        "result_cache_hit_rate": None if hit_rate is None else round(hit_rate, 3),
        "models": dict(models),
        "waiting_requests": svc.hub.pending_waiters,
        "workers": svc.registry.view()["totals"],
    }
