"""``python -m bench.profile``: where the farm's time goes (py-spy, sampled, on the live processes).

Seeds a database, starts the dispatcher and one worker paused, attaches ``py-spy record`` to both
(``pip install py-spy``), resumes, waits until the farm is idle, and prints the hottest frames.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

from bench.__main__ import idle, wait
from bench.seed import seed
from bench.ways import FarmRun
from couchfarm.couch import CouchClient
from couchfarm.state import FarmState
from workers.local_servers import PouchServer, RedisServer


def hottest(raw: Path, top: int) -> None:
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    print(f"{raw.name}: {total} samples")
    for frame, n in own.most_common(top):
        print(f"  {n / total:6.1%}  {frame[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    out = Path(tempfile.mkdtemp(prefix="couchfarm-profile-"))
    with PouchServer().start() as pouch, RedisServer().start() as redis_server:
        client, db = CouchClient(pouch.url), "profile"
        seed(client, db, args.docs, 3)
        state = FarmState(redis.Redis.from_url(redis_server.url, decode_responses=True))
        state.pause(db)
        run = FarmRun(pouch.url, redis_server.url, db, workers=1)
        try:
            run.start_workers()
            run.start_dispatcher()
            wait(lambda: state.holder(db)[0] is not None, 60)
            time.sleep(3)
            spies = [
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--subprocesses",
                        "-r",
                        "50",
                        "-f",
                        "raw",
                        "-o",
                        str(out / f"{name}.raw"),
                        "--pid",
                        str(proc.pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for name, proc in run.procs.items()
            ]
            time.sleep(1)
            started = time.perf_counter()
            state.resume(db)
            wait(lambda: idle(client, state, db), 600, interval=0.25)
            print(f"{args.docs} documents in {time.perf_counter() - started:.1f} s (with py-spy attached)")
            for s in spies:
                s.send_signal(2)
                s.wait(30)
        finally:
            run.stop()
    for raw in sorted(out.glob("*.raw")):
        hottest(raw, args.top)


if __name__ == "__main__":
    main()
