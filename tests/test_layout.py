"""Import direction: workers -> tasks -> couchfarm, and workers -> couchfarm; never back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = {"starlette", "jinja2", "uvicorn", "fastapi", "multipart"}  #: only workers/ui serves pages
FORBIDDEN = {"couchfarm": {"tasks", "workers", "celery", "click", *WEB}, "tasks": {"workers", *WEB}}


def imported_top_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_import_direction() -> None:
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in (ROOT / package).rglob("*.py"):
            hits = imported_top_names(path) & forbidden
            if hits:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(hits)}")
    assert not bad, bad


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    p = tmp_path / "m.py"
    p.write_text("import os\nfrom workers.cli import main\n")
    assert "workers" in imported_top_names(p)
