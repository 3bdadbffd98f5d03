"""``couchfarm demo`` runs to a clean end: both nodes agree, the summary is printed, nothing is left."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # the demo starts servers and the farm as processes


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


def test_demo_keep_leaves_the_farm_and_the_ui_running_until_ctrl_c() -> None:
    import signal
    import threading
    import time

    import requests

    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "demo", "--docs", "40", "-c", "1", "--keep"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        end = time.monotonic() + 240
        while not any("press Ctrl-C" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < end, "".join(lines)[-2000:]
            time.sleep(0.5)
        out = "".join(lines)
        ui = re.search(r"couchfarm ui:\s+(http://127\.0\.0\.1:\d+/)\s+\(user demo, password (\S+);", out)
        assert ui and "Flower:" in out and "export COUCHFARM_REDIS_URL=" in out, out
        assert requests.get(ui[1], timeout=10).status_code == 401
        page = requests.get(ui[1] + "dead-letters", auth=("demo", ui[2]), timeout=30)
        assert page.status_code == 200 and "order-0003" in page.text  # the one invalid order of 40
        time.sleep(2)
        assert proc.poll() is None  # still running after the summary
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stdout.close()  # type: ignore[union-attr]
    logs = re.search(r"logs:\s+(\S+)", "".join(lines))
    assert logs
    leftovers = subprocess.run(["pgrep", "-f", logs[1]], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "demo processes still running"
    with contextlib.suppress(requests.ConnectionError):
        requests.get(ui[1], timeout=2)
        raise AssertionError("couchfarm ui still answers after Ctrl-C")
