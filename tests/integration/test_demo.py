"""`mugpos demo` end to end on its embedded parts (tansu, secantusdb, local object store)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from control.demo import SCENES, run_demo


def test_demo_publishes_analyses_and_stores_every_scene(tmp_path: Path) -> None:
    output = io.StringIO()
    assert run_demo(tmp_path, Console(file=output, width=200)) is True
    text = output.getvalue()
    assert f"published {SCENES // 2} generated scenes" in text
    assert f"uploaded {SCENES - SCENES // 2} generated scenes" in text
    assert text.count(" kafka ") >= SCENES // 2  # the "sent via" column
    assert text.count(" rest ") >= SCENES - SCENES // 2
    assert "results (also in MongoDB" in text
    results = list((tmp_path / "objects" / "analysis-results").rglob("result.json"))
    originals = list((tmp_path / "objects" / "user-uploads").rglob("*.jpeg"))
    assert len(results) == SCENES
    assert len(originals) == SCENES
    # The trace of one uploaded image, as a tree from the demo's span file (stage, duration).
    tree = text[text.index("trace ") :]
    for stage in ("POST /api/v1/analyze", "process pipeline", "intake", "inference", "publish"):
        assert stage in tree, stage
    assert " ms" in tree
    assert (tmp_path / "traces.jsonl").stat().st_size > 0
