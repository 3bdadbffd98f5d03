"""User functions for the custom strategy, used by the tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


def explode(conflict: Any) -> dict[str, Any]:
    raise RuntimeError(f"cannot merge {conflict.doc_id}")


def sum_values(conflict: Any) -> dict[str, Any]:
    return {"value": sum(leaf.body.get("value", 0) for leaf in conflict.live)}


class Reading(BaseModel):
    """A pydantic model used as a document schema (``schema: tests.engine.custom_resolvers:Reading``)."""

    updated_at: str
    value: int = Field(ge=0, le=10)
