"""`leadscore demo` runs by itself for a given duration and shows scored leads."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_demo_runs_for_its_duration_and_exits_0() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadscore",
            "demo",
            "--duration",
            "15",
            "--rate",
            "200",
            "--day-seconds",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # without a terminal: what runs where comes first, then a progress line every 5 s
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith("leadscore demo: broker ")
    assert "clock: ACCELERATED" in out.split("[   0 s]")[0]
    # the worker's count of events scored is shown only once scraped, and never beside
    # outputs it does not cover
    for line in [line for line in lines if line.startswith("[")]:
        scored = line.split("scored by the worker ")[1].split()[0]
        changes = int(line.split("score changes ")[1].split()[0].replace(",", ""))
        if changes:
            assert scored != "starting", line
            assert int(scored.replace(",", "")) > 0, line
    assert "Top leads by score" in out
    assert "Recent stage transitions" in out
    assert "first_event" in out
    # a transition says why the lead is in its new stage: the conditions with its values
    assert re.search(r"(progressed|regressed): [a-z ]+ [\d.]+ >= \d", out), out
    assert "worker metrics: http://127.0.0.1:" in out
    assert "lead-" in out
    # the summary counts events scored by the worker: more than none
    summary = [line for line in out.splitlines() if "scored by the worker" in line][-1]
    scored = int(summary.split("scored by the worker")[1].split()[0].replace(",", ""))
    assert scored > 100
    # 30 simulated days: quiet leads cooled down with no new event, on screen
    assert "clock: ACCELERATED, one simulated day every 0.5 s" in out
    counts = re.findall(r"time-driven changes[\s│]*([\d,]+)", out)
    assert counts
    assert int(counts[-1].replace(",", "")) > 0
    assert "after the last event" in out  # a transition whose reason is decay or inactivity
    assert "analytics" in out or "automation" in out  # category scores in the lead view
