"""SceneFacts to plain JSON-able dicts and back: how facts are stored with each result, so rules
can be back-tested later without running the model again."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from core.positioning.facts import Move, MugFacts, ScaleEstimate, SceneFacts


def facts_to_dict(facts: SceneFacts) -> dict[str, Any]:
    return asdict(facts)


def facts_from_dict(data: dict[str, Any]) -> SceneFacts:
    scale = ScaleEstimate(**data["scale"]) if data.get("scale") else None
    mugs = []
    for mug in data["mugs"]:
        move = mug.get("recommendation")
        mugs.append(
            MugFacts(
                **{
                    **mug,
                    "box": tuple(mug["box"]),
                    "failing": tuple(mug["failing"]),
                    "recommendation": Move(**{**move, "satisfies": tuple(move["satisfies"])})
                    if move
                    else None,
                }
            )
        )
    return SceneFacts(
        scale=scale,
        mugs=tuple(mugs),
        mug_count=data["mug_count"],
        tables=data["tables"],
        mugs_per_table=tuple(data["mugs_per_table"]),
        coasters=data["coasters"],
        unmatched_coasters=data["unmatched_coasters"],
        hazards=data["hazards"],
        confidences=tuple(data["confidences"]),
        unseen=tuple(data.get("unseen", ())),
        ignored_coasters=data.get("ignored_coasters", 0),
    )
