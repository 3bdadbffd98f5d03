"""Which resolver a document gets: database rules, then type rules within them.

Routing reads only the database name, the document id and the body of CouchDB's current winner,
which depends on the set of leaves alone; so every worker routes a conflict the same way.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from couchfarm.canonical import dumps
from couchfarm.errors import ConfigError
from couchfarm.models import ConflictSet
from couchfarm.resolvers.base import Resolver
from couchfarm.resolvers.registry import build_resolver
from couchfarm.settings import DatabaseRule, StrategySpec, TypeRule

_OWN = ("strategy", "options", "schema_path", "deletion")


class Router:
    """Routes conflicts to resolvers; builds (and so checks) every configured spec up front."""

    def __init__(self, rules: list[DatabaseRule], default: StrategySpec | None = None) -> None:
        self.rules = list(rules)
        self.default = default or StrategySpec()
        self._cache: dict[str, Resolver] = {}
        for rule in self.rules:
            self._resolver(_own(rule))
            for i, type_rule in enumerate(rule.types, 1):
                if type_rule.value is None and type_rule.id_prefix is None:
                    raise ConfigError(
                        f"database rule {rule.name!r}: type rule {i} needs a value or an id_prefix",
                        field=f"databases.{rule.name}.types.{i - 1}",
                    )
                self._resolver(effective(rule, type_rule))
        self._resolver(_own(self.default))

    def route(self, db: str, conflict: ConflictSet) -> tuple[Resolver, StrategySpec]:
        """The resolver for ``conflict`` in ``db``, and the spec it was built from."""
        spec = self.spec_for(db, conflict)
        return self._resolver(spec), spec

    def resolves_design_docs(self, db: str) -> bool:
        """Whether the database rule of ``db`` opts in to merging ``_design/`` documents."""
        rule = self.rule(db)
        return rule is not None and rule.resolve_design_docs

    def rule(self, db: str) -> DatabaseRule | None:
        return next((r for r in self.rules if fnmatchcase(db, r.name)), None)

    def spec_for(self, db: str, conflict: ConflictSet) -> StrategySpec:
        rule = self.rule(db)
        if rule is None:
            return _own(self.default)
        type_rule = next((t for t in rule.types if matches(t, conflict)), None)
        return _own(rule) if type_rule is None else effective(rule, type_rule)

    def _resolver(self, spec: StrategySpec) -> Resolver:
        key = dumps([spec.strategy, spec.options, spec.deletion])
        if key not in self._cache:
            self._cache[key] = build_resolver(spec)
        return self._cache[key]


def matches(rule: TypeRule, conflict: ConflictSet) -> bool:
    """Every condition the type rule sets holds: the id prefix, and the winner's ``field == value``."""
    if rule.id_prefix is not None and not conflict.doc_id.startswith(rule.id_prefix):
        return False
    if rule.value is None:
        return True
    winner = conflict.winner
    return winner is not None and winner.body.get(rule.field) == rule.value


def effective(db_rule: DatabaseRule, type_rule: TypeRule) -> StrategySpec:
    """The type rule's spec; what it does not set comes from its database rule (``strategy`` and
    ``options`` together: options written for one strategy mean nothing to another)."""
    own = set(type_rule.model_fields_set)
    source = type_rule if own & {"strategy", "options"} else db_rule
    return StrategySpec.model_validate(
        {
            "strategy": source.strategy,
            "options": dict(source.options),
            "schema_path": (type_rule if "schema_path" in own else db_rule).schema_path,
            "deletion": (type_rule if "deletion" in own else db_rule).deletion,
        }
    )


def _own(spec: StrategySpec) -> StrategySpec:
    """A plain spec with the rule's own four settings (no name, types or flags)."""
    return StrategySpec.model_validate({name: getattr(spec, name) for name in _OWN})
