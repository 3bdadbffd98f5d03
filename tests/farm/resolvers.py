"""Custom strategies used by the farm tests (run inside real Celery worker processes)."""

from __future__ import annotations

import contextlib
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


def _first_time(conflict: Any) -> bool:
    """True once per test (the marker file in COUCHFARM_TEST_MARKER records when it happened)."""
    marker = os.environ.get("COUCHFARM_TEST_MARKER")
    if not marker:
        return False
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, repr(time.time()).encode())
    os.close(fd)
    return True


def stuck(conflict: Any) -> dict[str, Any]:
    """The first time: ignores the soft time limit and hangs until the hard limit kills its process."""
    if _first_time(conflict):
        while True:
            with contextlib.suppress(BaseException):  # the soft time limit, ignored on purpose
                time.sleep(60)
    return newest(conflict)


def sleepy(conflict: Any) -> dict[str, Any]:
    """The first time: slower than the soft time limit (which interrupts it)."""
    if _first_time(conflict):
        time.sleep(30)
    return newest(conflict)
