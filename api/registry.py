"""The worker registry as the API sees it: the newest heartbeat of every worker from the control
topic, `lost` after two missed beats, with cost and a scaling hint."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from core.config import Settings
from schemas.control import WorkerStatus

FORGET_AFTER = timedelta(minutes=10)


class WorkerRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._workers: dict[str, WorkerStatus] = {}

    async def on_message(self, key: bytes, value: bytes) -> None:
        if not key.startswith(b"status:"):
            return
        try:
            status = WorkerStatus.model_validate_json(value)
        except ValidationError:
            return
        self._workers[status.worker_id] = status

    def get(self, worker_id: str) -> WorkerStatus | None:
        return self._workers.get(worker_id)

    def view(self, lag_by_partition: dict[str, int] | None = None) -> dict[str, Any]:
        """Every known worker (state `lost` when its beats stopped), totals and a scaling hint."""
        now = datetime.now(UTC)
        price = self._settings.gpu_price_per_hour
        lags = lag_by_partition or {}
        workers = []
        for worker_id, status in list(self._workers.items()):
            age = now - status.heartbeat_at
            if age > FORGET_AFTER:
                del self._workers[worker_id]
                continue
            lost = age.total_seconds() > 2 * status.heartbeat_interval_s
            row = status.model_dump(mode="json")
            row["state"] = "lost" if lost else status.state
            row["heartbeat_age_s"] = round(age.total_seconds(), 1)
            row["cost_usd"] = round(status.gpu_seconds * price / 3600, 4)
            row["consumer_lag"] = sum(lags.get(p, 0) for p in status.partitions)
            workers.append(row)
        live = [w for w in workers if w["state"] != "lost"]
        inference = [w for w in live if "inference" in w["stages"]]
        backlog = sum(lags.values())
        per_worker = (
            sum(w["throughput_per_s"] for w in inference) / len(inference) if inference else 0.0
        )
        target = self._settings.scale_target_s
        if backlog == 0:
            needed = min(len(inference), 1) if inference else 0
        elif per_worker > 0:
            needed = math.ceil(backlog / (per_worker * target))
        else:
            needed = max(1, len(inference))
        return {
            "workers": sorted(workers, key=lambda w: w["worker_id"]),
            "totals": {
                "workers": len(workers),
                "live": len(live),
                "lost": len(workers) - len(live),
                "images_last_minute": sum(w["images_last_minute"] for w in live),
                "gpu_seconds": round(sum(w["gpu_seconds"] for w in workers), 1),
                "cost_usd": round(sum(w["cost_usd"] for w in workers), 4),
                "gpu_price_per_hour": price,
            },
            "scaling": {
                "backlog_messages": backlog,
                "throughput_per_inference_worker": round(per_worker, 3),
                "target_s": target,
                "inference_workers_now": len(inference),
                "inference_workers_needed": needed,
            },
        }
