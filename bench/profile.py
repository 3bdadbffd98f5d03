"""``python -m bench.profile``: where the farm's time goes (py-spy, sampled, on the live processes).

Seeds a database, starts the dispatcher and one worker paused, attaches ``py-spy record`` to both
(``pip install py-spy``), resumes, waits until the farm is idle, and prints the hottest frames.
With ``--reference``, runs the reference (``python -m bench.reference``) under ``py-spy record``
instead, and prints its hottest frames and the server's CPU per document beside them.
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
from bench.server import ServerProcess
from bench.ways import BENCH_FARM, FarmRun
from couchfarm.couch import CouchClient
from couchfarm.state import FarmState
from workers.local_servers import PouchServer, RedisServer

#: the reference's timed work (its feed loop and its page threads), and the steps shown inclusively
REFERENCE_ROOTS = ("reference (bench/reference.py", "resolve_page (bench/reference.py")
REFERENCE_STEPS = (
    "CouchClient.changes (couchfarm/couch.py",
    "bulk_get (bench/reference.py",
    "writes_for (bench/merge.py",
    "CouchClient.bulk_docs (couchfarm/couch.py",
)


def hottest(raw: Path, top: int, roots: tuple[str, ...] = (), steps: tuple[str, ...] = ()) -> None:
    """The frames with the most samples of their own; with ``roots``, only stacks through one of
    those frames; ``steps``: the share of samples under each of those frames."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if roots and not any(f.startswith(roots) for f in frames):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for step in steps:
            under[step] += int(count) * any(f.startswith(step) for f in frames)
    print(f"{raw.name}: {total} samples" + (" in " + ", ".join(r.split()[0] for r in roots) if roots else ""))
    for step in steps:
        print(f"  {under[step] / max(total, 1):6.1%}  under {step})")
    for frame, n in own.most_common(top):
        print(f"  {n / total:6.1%}  {frame[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--reference", action="store_true", help="profile the reference, not the farm")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    out = Path(tempfile.mkdtemp(prefix="couchfarm-profile-"))
    with PouchServer().start() as pouch, RedisServer().start() as redis_server:
        client, db = CouchClient(pouch.url), "profile"
        seed(client, db, args.docs, 3)
        if args.reference:
            profile_reference(spy, pouch, db, out)
        else:
            profile_farm(spy, client, pouch.url, redis_server.url, db, args.docs, out)
    for raw in sorted(out.glob("*.raw")):
        if args.reference:
            hottest(raw, args.top, REFERENCE_ROOTS, REFERENCE_STEPS)
        else:
            hottest(raw, args.top)


def record(spy: str, out: Path, name: str, *target: str) -> list[str]:
    """``py-spy record`` of ``target`` (``--pid N`` or ``-- command``), 50 samples/s, raw output."""
    return [spy, "record", "--subprocesses", "-r", "50", "-f", "raw", "-o", str(out / f"{name}.raw"), *target]


def profile_reference(spy: str, pouch: PouchServer, db: str, out: Path) -> None:
    server = ServerProcess(pouch.proc.pid if pouch.proc else None, "pouchdb-server")
    cpu = server.cpu_seconds() or 0.0
    command = [sys.executable, "-m", "bench.reference", pouch.url, db]
    subprocess.run(record(spy, out, "reference", "--", *command), check=True)
    print(f"pouchdb-server meanwhile: {(server.cpu_seconds() or 0.0) - cpu:.2f} s CPU")


def profile_farm(
    spy: str, client: CouchClient, couch_url: str, redis_url: str, db: str, docs: int, out: Path
) -> None:
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), BENCH_FARM)
    state.pause(db)
    run = FarmRun(couch_url, redis_url, db, workers=1)
    try:
        run.start_workers()
        run.start_dispatcher()
        wait(lambda: state.holder(db)[0] is not None, 60)
        time.sleep(3)
        spies = [
            subprocess.Popen(
                record(spy, out, name, "--pid", str(proc.pid)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, proc in run.procs.items()
        ]
        time.sleep(1)
        started = time.perf_counter()
        state.unpause(db)
        wait(lambda: idle(client, state, db), 600, interval=0.25)
        print(f"{docs} documents in {time.perf_counter() - started:.1f} s (with py-spy attached)")
        for s in spies:
            s.send_signal(2)
            s.wait(30)
    finally:
        run.stop()


if __name__ == "__main__":
    main()
