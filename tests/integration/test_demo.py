"""`mugpos demo --serve` end to end on its embedded parts (tansu, secantusdb, local object store),
run as a user runs it: the command line, its printed report, and the web console it prints a
sign-in for, opened in Chromium; then Ctrl-C (SIGTERM) stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from playwright.sync_api import Browser, expect

from control.demo import DEMO_USER, SCENES

SERVING_TIMEOUT_S = 300
SERVING = re.compile(
    r"web console (http://127\.0\.0\.1:\d+/console/) · sign in as (\S+) / (\S+) \(admin\)"
)


def _read_until_serving(process: subprocess.Popen, lines: list[str]) -> re.Match:
    """Collect the demo's output (in a thread: readline blocks) until the serving line."""
    found = threading.Event()
    match: list[re.Match] = []

    def pump() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if hit := SERVING.search(line):
                match.append(hit)
                found.set()
        found.set()  # the demo exited before serving

    threading.Thread(target=pump, daemon=True).start()
    assert found.wait(SERVING_TIMEOUT_S), "".join(lines[-40:])
    assert match, f"the demo stopped before serving:\n{''.join(lines[-40:])}"
    return match[0]


def test_demo_runs_the_pipeline_then_serves_the_console_it_prints(
    tmp_path: Path, browser: Browser
) -> None:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "control.cli", "demo", "--serve", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        serving = _read_until_serving(process, lines)
        text = "".join(lines)
        assert f"published {SCENES // 2} generated scenes" in text
        assert f"uploaded {SCENES - SCENES // 2} generated scenes" in text
        assert text.count(" kafka ") >= SCENES // 2  # the "sent via" column
        assert text.count(" rest ") >= SCENES - SCENES // 2
        assert "results (also in MongoDB" in text
        # The trace of one uploaded image, as a tree from the demo's span file (stage, duration).
        tree = text[text.index("trace ") :]
        for stage in ("POST /api/v1/analyze", "process pipeline", "intake", "inference", "publish"):
            assert stage in tree, stage
        assert " ms" in tree
        assert (tmp_path / "traces.jsonl").stat().st_size > 0

        url, user, password = serving.groups()
        assert user == DEMO_USER
        page = browser.new_page()
        page.goto(url)
        page.get_by_label("User name").fill(user)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("whoami")).to_contain_text(f"{DEMO_USER} (admin)")
        # The demo's scenes are in the console's history.
        page.get_by_role("link", name="History").click()
        expect(page.get_by_test_id("history-results").locator("tbody tr")).to_have_count(SCENES)
        page.close()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # as a supervisor's stop: it stops what it started
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: what this test started
            process.wait(10)
    assert process.returncode == 0, "".join(lines[-30:])
    results = list((tmp_path / "objects" / "analysis-results").rglob("result.json"))
    originals = list((tmp_path / "objects" / "user-uploads").rglob("*.jpeg"))
    assert len(results) == SCENES
    assert len(originals) == SCENES
