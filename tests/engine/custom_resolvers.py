"""User functions for the custom strategy, used by the tests."""

from __future__ import annotations

from typing import Any


def explode(conflict: Any) -> dict[str, Any]:
    raise RuntimeError(f"cannot merge {conflict.doc_id}")


def sum_values(conflict: Any) -> dict[str, Any]:
    return {"value": sum(leaf.body.get("value", 0) for leaf in conflict.live)}
