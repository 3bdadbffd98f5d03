"""The vendored JavaScript is what its README says (package, version, digest) and ships as package data."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "workers" / "ui" / "static" / "vendor"


def test_vendored_files_match_their_recorded_digests() -> None:
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", (VENDOR / "README.md").read_text(), re.M)
    assert {name for name, _ in rows} == {"uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in rows:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "MIT" in (VENDOR / "uPlot.LICENSE").read_text()


def test_templates_and_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "workers.ui" in config["packages"]
    patterns = config["package-data"]["workers.ui"]
    shipped = {p for pattern in patterns for p in (ROOT / "workers" / "ui").glob(pattern)}
    wanted = [
        p
        for p in (ROOT / "workers" / "ui").rglob("*")
        if p.is_file() and p.suffix in (".html", ".js", ".css")
    ]
    assert wanted and set(wanted) <= shipped


def test_no_page_loads_anything_from_another_host() -> None:
    for path in (ROOT / "workers" / "ui").rglob("*"):
        if path.suffix in (".html", ".js", ".css") and path.parent.name != "vendor":
            assert not re.search(r"(src|href)=\"(https?:)?//", path.read_text()), path
