"""Strategies for the dead-letter tests: one that raises, one that provokes a 409 storm."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import requests


def newest(conflict: Any) -> dict[str, Any]:
    leaf = max(conflict.live, key=lambda leaf: (leaf.body.get("updated_at", ""), leaf.rev))
    return dict(leaf.body)


def explode(conflict: Any) -> dict[str, Any]:
    raise ValueError(f"explode cannot merge {conflict.doc_id}")


def storm(conflict: Any) -> dict[str, Any]:
    """Someone edits the winner between every read and write: a 409 on every attempt."""
    url = f"{os.environ['COUCHFARM_COUCH_URL']}/{conflict.db}/{quote(conflict.doc_id, safe='')}"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    current = requests.get(url, headers=headers, timeout=10).json()
    current["storm"] = current.get("storm", 0) + 1
    requests.put(url, data=json.dumps(current), headers=headers, timeout=10)
    return newest(conflict)
