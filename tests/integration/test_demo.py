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
    assert "Top leads by score" in out
    assert "Recent stage transitions" in out
    assert "first_event" in out
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
