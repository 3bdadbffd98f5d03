"""Custom strategies used by the farm tests (run inside real Celery worker processes)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def newest(conflict: Any) -> dict[str, Any]:
    leaf = max(conflict.live, key=lambda leaf: (leaf.body.get("updated_at", ""), leaf.rev))
    return dict(leaf.body)


def slow(conflict: Any) -> dict[str, Any]:
    """Takes its time, so that a test can kill the worker in the middle of a batch."""
    time.sleep(float(os.environ.get("COUCHFARM_TEST_SLOW", "0.5")))
    return newest(conflict)


def poison(conflict: Any) -> dict[str, Any]:
    """Kills its own worker process for documents named poison-*, like a segfaulting extension."""
    if conflict.doc_id.startswith("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    return newest(conflict)
