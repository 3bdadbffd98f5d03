"""``couchfarm demo`` runs to a clean end: both nodes agree, the summary is printed, nothing is left."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_runs_to_a_clean_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    out = subprocess.run(
        [sys.executable, "-m", "workers", "demo", "--docs", "80", "-c", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    resolved = re.search(r"resolved:\s+(\d+) conflicted documents; both nodes agree", out.stdout)
    dead = re.search(r"dead-lettered:\s+(\d+)", out.stdout)
    assert resolved and dead, out.stdout
    assert int(resolved[1]) + int(dead[1]) == 80 and int(dead[1]) == 2  # orders 3 and 43 carry qty -1
    assert "qty: -1 is less than the minimum of 0" in out.stdout
    assert re.search(r"latency:\s+p50 \d+ ms, p99 \d+ ms", out.stdout)
    logs = re.search(r"logs:\s+(\S+)", out.stdout)
    assert logs
    leftovers = subprocess.run(["pgrep", "-f", logs[1]], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "demo processes still running"
