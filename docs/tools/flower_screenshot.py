"""Screenshot of Flower listing dead-lettered documents, taken with headless Chromium (Debian `chromium`).

    .venv/bin/python docs/tools/flower_screenshot.py docs/flower-dead-letters.png

Starts a pouchdb-server, a Redis, a worker, a dispatcher and Flower (basic auth), seeds conflicts of
which three dead-letter for different reasons, checks through Flower's API that they are listed in
state DEAD_LETTERED, then has Chromium load Flower's task page filtered on that state and save a PNG.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from couchfarm.couch import CouchClient
from tests.farm.procs import Farm, wait_for
from tests.helpers import make_conflict
from tests.ui.browser import FLAGS
from workers.local_servers import PouchServer, RedisServer, free_port


def main(out: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="couchfarm-shot-"))
    schema = tmp / "order.json"
    schema.write_text('{"type": "object", "properties": {"qty": {"type": "integer", "minimum": 0}}}')
    (tmp / "farm.yaml").write_text(f"""databases:
  - name: shop
    strategy: lww
    options: {{field: updated_at}}
    schema: {schema}
    types:
      - {{id_prefix: 'custom-', strategy: custom, options: {{function: 'tests.dlq.resolvers:explode'}}}}
""")
    with PouchServer().start() as pouch, RedisServer().start() as redis_server:
        client = CouchClient(pouch.url)
        leaves = [
            {"updated_at": "2026-01-01T00:00:00Z", "qty": 1},
            {"updated_at": "2026-02-01T00:00:00Z", "qty": 2},
        ]
        for doc_id, bad in (
            ("order-0042", {"qty": -5}),
            ("order-0043", {"qty": -1}),
            ("custom-0007", {}),
            ("ok-1", {}),
        ):
            make_conflict(client, "shop", doc_id, [leaves[0], {**leaves[1], **bad}])
        port = free_port()
        farm = Farm(
            tmp,
            pouch.url,
            redis_server.url,
            COUCHFARM_CONFIG=str(tmp / "farm.yaml"),
            HOME=str(tmp),
            COUCHFARM_FLOWER_USER="ops",
            COUCHFARM_FLOWER_PASSWORD="demo-only",
        )
        try:
            farm.start("flower", "flower", "--port", str(port))
            wait_for(lambda: _up(port), 60, "Flower")
            farm.worker("w", 1)
            farm.dispatcher("d", "shop")
            api = f"http://127.0.0.1:{port}/api/tasks?state=DEAD_LETTERED"
            wait_for(
                lambda: len(requests.get(api, auth=("ops", "demo-only"), timeout=5).json()) >= 3,
                60,
                "3 dead letters",
            )
            time.sleep(1)
            page = f"http://ops:demo-only@127.0.0.1:{port}/tasks?state=DEAD_LETTERED"
            subprocess.run(
                [
                    "chromium",
                    *FLAGS,
                    f"--user-data-dir={tmp / 'chrome'}",
                    "--window-size=1500,700",
                    "--virtual-time-budget=5000",
                    f"--screenshot={os.path.abspath(out)}",
                    page,
                ],
                check=True,
                timeout=120,
                capture_output=True,
            )
            print(f"saved {out}")
        finally:
            farm.stop()


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/flower-dead-letters.png")
