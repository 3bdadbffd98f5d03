"""What a plan says about one object: its action and its field-level differences, safe to print.

Shared by the ``_replicator`` plan and the ``_security`` plan, so both show changes the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from couchfarm.replication.models import mask_doc


class Action(str, Enum):
    CREATE = "create"  # declared, absent from the node
    UPDATE = "update"  # declared, present, spec differs: the document is replaced
    DELETE = "delete"  # ours, no longer declared, and --prune was given
    UNCHANGED = "unchanged"  # declared and identical (server-written fields aside)
    ORPHAN = "orphan"  # ours, no longer declared; kept because --prune was not given
    FOREIGN = "foreign"  # the id is declared but the document there is not ours: never touched
    UNKNOWN = "unknown"  # the node could not be read: nothing there is checked or changed this run


@dataclass(frozen=True)
class FieldDiff:
    """One field's change, values masked; ``None`` side means absent."""

    field: str
    before: Any
    after: Any
    note: str = ""

    def line(self) -> str:
        if self.before is None:
            return f"+ {self.field}: {short(self.after)}"
        if self.after is None:
            return f"- {self.field}: {short(self.before)}"
        return f"~ {self.field}: {short(self.before)} -> {short(self.after)}" + (
            f" ({self.note})" if self.note else ""
        )

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in (None, "")}


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[FieldDiff]:
    """Field-level differences, masked; equal after masking but unequal before means credentials."""
    masked_before, masked_after = mask_doc(before), mask_doc(after)
    out = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key) and (key in before) == (key in after):
            continue
        old, new = masked_before.get(key), masked_after.get(key)
        out.append(FieldDiff(key, old, new, "credentials differ" if old == new else ""))
    return out


def short(value: Any) -> str:
    """One value as compact JSON, cut at 100 characters."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 100 else text[:97] + "..."
