"""What a PromQL expression needs from the metrics: parsed by a real PromQL parser (promql-parser,
Prometheus's grammar), then walked. ``check`` follows the labels through the expression: every label a
selector matches on must be a label of that metric, every ``by``/``on``/``group_left`` label must be a
label of the expression it groups or matches, and the labels of the result are returned (so a rule can
be asked whether its alerts carry ``farm`` and ``db``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser as pp

#: labels every scraped series gets from its target, not from the /metrics text
TARGET_LABELS = frozenset({"instance", "job"})
#: Grafana's variables, replaced by what they stand for in a query before it is parsed
GRAFANA = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
SET_OPERATORS = {"and", "or", "unless"}


class PromQLError(AssertionError):
    """An expression uses a metric or a label that is not there."""


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]  #: (label, operator, value)


def parse(expr: str) -> Any:
    for var, value in GRAFANA.items():
        expr = expr.replace(var, value)
    return pp.parse(expr)


def _children(node: Any) -> list[Any]:
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, pp.Call):
        return list(node.args)
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return [node.expr]
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    return []


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in _children(node):
        yield from _walk(child)


def selectors(expr: str) -> list[Selector]:
    """Every series selector of ``expr``, with its matchers (``__name__`` matchers left out)."""
    out = []
    for node in _walk(parse(expr)):
        if isinstance(node, pp.VectorSelector):
            matchers = tuple(
                (m.name, _op(m.op), m.value) for m in node.matchers.matchers if m.name != "__name__"
            )
            out.append(Selector(str(node.name), matchers))
    return out


def _op(op: Any) -> str:
    return {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}[str(op).split(".")[-1].split("(")[0]]


def values(regex: str) -> list[str] | None:
    """The values a simple ``a|b|c`` regex matcher stands for; None for a real pattern."""
    parts = regex.split("|")
    return parts if all(re.fullmatch(r"[A-Za-z0-9_:.\-]+", p) for p in parts) else None


def check(expr: str, labels_of: Callable[[str], set[str] | None]) -> set[str]:
    """The labels of ``expr``'s result, after checking every label it uses; ``labels_of(metric)`` gives
    a metric's labels (None: no such metric)."""
    return _labels(parse(expr), labels_of, expr)


def _labels(node: Any, labels_of: Callable[[str], set[str] | None], expr: str) -> set[str]:
    if isinstance(node, pp.MatrixSelector):
        return _labels(node.vector_selector, labels_of, expr)
    if isinstance(node, pp.VectorSelector):
        have = labels_of(str(node.name))
        if have is None:
            raise PromQLError(f"{expr}: no metric {node.name}")
        have = have | TARGET_LABELS
        for m in node.matchers.matchers:
            if m.name != "__name__" and m.name not in have:
                raise PromQLError(f"{expr}: {node.name} has no label {m.name} (it has {sorted(have)})")
        return have
    if isinstance(node, (pp.NumberLiteral, pp.StringLiteral)):
        return set()
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return _labels(node.expr, labels_of, expr)
    if isinstance(node, pp.Call):
        return _call(node, labels_of, expr)
    if isinstance(node, pp.AggregateExpr):
        inner = _labels(node.expr, labels_of, expr)
        if node.modifier is None:
            return set()
        grouping = set(node.modifier.labels)
        _need(grouping, inner, f"{node.op} by/without", expr)
        return grouping if str(node.modifier.type).endswith("By") else inner - grouping
    if isinstance(node, pp.BinaryExpr):
        return _binary(node, labels_of, expr)
    raise PromQLError(f"{expr}: cannot follow {type(node).__name__}")


def _call(node: Any, labels_of: Callable[[str], set[str] | None], expr: str) -> set[str]:
    name = node.func.name
    args = [_labels(a, labels_of, expr) for a in node.args]
    if name == "histogram_quantile":
        _need({"le"}, args[1], "histogram_quantile", expr)
        return args[1] - {"le"}
    if name in ("time", "vector", "scalar"):
        return set()
    vectors = [a for a, node_arg in zip(args, node.args, strict=True) if not _is_scalar(node_arg)]
    return vectors[0] if vectors else set()


def _is_scalar(node: Any) -> bool:
    return isinstance(node, (pp.NumberLiteral, pp.StringLiteral)) or (
        isinstance(node, pp.ParenExpr) and _is_scalar(node.expr)
    )


def _binary(node: Any, labels_of: Callable[[str], set[str] | None], expr: str) -> set[str]:
    lhs, rhs = _labels(node.lhs, labels_of, expr), _labels(node.rhs, labels_of, expr)
    if _is_scalar(node.lhs):
        return rhs
    if _is_scalar(node.rhs):
        return lhs
    modifier = node.modifier
    matching = modifier.matching if modifier is not None else None
    if matching is not None and matching.labels:
        _need(set(matching.labels), lhs, f"{node.op} on/ignoring (left)", expr)
        _need(set(matching.labels), rhs, f"{node.op} on/ignoring (right)", expr)
    group = set(modifier.group_labels or []) if modifier is not None else set()
    if str(node.op) in SET_OPERATORS:
        return lhs | rhs if str(node.op) == "or" else lhs
    if modifier is not None and str(modifier.card).endswith("OneToMany"):  # group_right
        _need(group, lhs, "group_right", expr)
        return rhs | group
    if group:
        _need(group, rhs, "group_left", expr)
        return lhs | group
    return lhs


def _need(wanted: set[str], have: set[str], where: str, expr: str) -> None:
    missing = wanted - have
    if missing:
        raise PromQLError(
            f"{expr}: {where} uses {sorted(missing)}, not labels of what it groups ({sorted(have)})"
        )
