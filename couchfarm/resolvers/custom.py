"""``custom``: the user's own function, ``package.module:function``, imported once at build time.

It is called as ``function(conflict)`` with a :class:`~couchfarm.models.ConflictSet` whose leaves are
the candidates the deletion policy left (live leaves, in CouchDB's winner order) and returns:

- a dict: the merged body (``"_deleted": True`` in it means delete the document; other ``_``
  members are dropped, CouchDB metadata is the engine's business, except ``_attachments``);
- None: "I cannot resolve this one" -> the document is dead-lettered with that reason.

Anything else, and any exception it raises, becomes :class:`~couchfarm.errors.ResolverError`, which
the engine dead-letters: one broken function must not stall the feed. The function must be as
deterministic as the built-in strategies (invariant 4); couchfarm cannot check that for it. An
optional ``version`` attribute on the function goes into the fingerprint, so provenance can tell
two versions of the same function apart.

Attachments follow the leaf whose body the function returned (every leaf with an equal body, in
CouchDB's winner order). A function that builds a new body, or wants other copies, says which leaf's
copy to keep per name: ``"_attachments": {"photo.jpg": "3-abc...", "old.txt": None}`` (a live leaf's
rev, or None to drop the attachment). When the leaves disagree on an attachment and nothing says
which copy to keep, the document is dead-lettered with that reason instead of guessing.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from couchfarm.canonical import same
from couchfarm.errors import ResolverError
from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Options, merged, rank

VERSION = 1


@dataclass(frozen=True)
class Custom:
    path: str
    function: Callable[[ConflictSet], Any]

    name: ClassVar[str] = "custom"
    version: ClassVar[int] = VERSION

    @property
    def options(self) -> dict[str, Any]:
        return {"function": self.path, "function_version": getattr(self.function, "version", None)}

    def choose(self, conflict: ConflictSet, leaves: tuple[Leaf, ...]) -> Resolution:
        try:
            out = self.function(replace(conflict, leaves=leaves))
        except Exception as exc:
            raise self.error(f"raised {type(exc).__name__}: {exc}") from exc
        if out is None:
            return Resolution.fail("custom resolver returned None")
        if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
            raise self.error(f"returned {type(out).__name__} {out!r:.200}, not a dict or None")
        try:
            json.dumps(out, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise self.error(f"returned a body that is not JSON: {exc}") from None
        if out.get("_deleted") is True:
            return Resolution.deletion()
        attachments = self._attachments(out.get("_attachments"))
        chosen = tuple(leaf for leaf in leaves if same(unprivate(out), leaf.body))
        return merged(out, tuple(sorted(chosen, key=rank, reverse=True)), attachments)

    def _attachments(self, value: Any) -> dict[str, str | None] | None:
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
        ):
            raise self.error(f"returned _attachments {value!r:.200}, not a map of name to rev or None")
        return dict(value)

    def error(self, problem: str) -> ResolverError:
        return ResolverError(f"custom resolver {self.path} {problem}", strategy="custom")


def unprivate(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if not k.startswith("_")}


def build(opts: Options) -> Custom:
    """Options: ``function`` (required), ``package.module:function`` (``module:Class.method`` too)."""
    path = opts.required_text("function")
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise opts.error("function", f"must look like package.module:function, not {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # an ImportError, AttributeError, or the module failing as it loads
        raise opts.error("function", f"cannot load {path!r}: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise opts.error("function", f"{path!r} is not callable")
    return Custom(path=path, function=target)
