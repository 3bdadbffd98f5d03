"""A real headless Chromium (the system's, driven by Playwright) and a real ``couchfarm ui`` process.

The browser tests skip, saying why, when Playwright or a Chromium binary is missing. Set
``COUCHFARM_CHROMIUM`` to use another binary, and ``COUCHFARM_UI_SCREENSHOTS`` to a folder (``docs``)
to keep the screenshots the tests take (docs/ui.md shows them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from workers.local_servers import free_port

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    candidates = [os.environ.get("COUCHFARM_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def launch(playwright: Any) -> Any:
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium found: apt-get install chromium (Debian), or set COUCHFARM_CHROMIUM")
    return playwright.chromium.launch(executable_path=binary, args=FLAGS)


@contextmanager
def ui_process(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """``couchfarm ui`` as a person starts it, on a free loopback port; its address."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")} | env
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "ui", "--port", str(port), *args],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/", timeout=2).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"couchfarm ui did not start: {log.read_text()[-1500:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("COUCHFARM_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
