"""Fail points: named places where a test can make a process die as a crash would.

``COUCHFARM_FAILPOINT=name:marker_file`` makes the process SIGKILL itself the first time it
reaches ``hit("name")`` (the marker file records that it fired, so the redelivered work goes
through). Unset, ``hit`` is one dictionary lookup. Used to prove that a crash at the worst moment
(between a dead-letter write and the task's acknowledgement) loses and duplicates nothing.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def hit(name: str) -> None:
    spec = os.environ.get("COUCHFARM_FAILPOINT")
    if not spec:
        return
    point, _, marker = spec.partition(":")
    if point != name or not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    Path(marker).write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
