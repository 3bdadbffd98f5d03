"""Check a Mango selector (a replication's ``selector``) before a server sees it.

CouchDB refuses an unknown operator only when the replication job starts (``invalid_operator``,
and the job crashes); pouchdb-server may ignore it and replicate everything. So every ``$`` key must
be one of the operators of CouchDB's documentation (``ddocs/mango.rst``, 3.x), with the argument
shape CouchDB's ``mango_selector:norm_ops`` demands. ``$beginsWith`` is new in CouchDB 3.4. A field
whose name starts with ``$`` is written ``\\$name``. ``$text`` is left out: it needs a text index,
which a replication filter does not use.
"""

from __future__ import annotations

from typing import Any

#: operator -> the shape of its argument
OPERATORS: dict[str, str] = {
    **dict.fromkeys(("$lt", "$lte", "$eq", "$ne", "$gte", "$gt"), "any"),
    "$exists": "bool",
    "$type": "string",
    "$in": "list",
    "$nin": "list",
    "$size": "count",
    "$mod": "divisor_remainder",
    "$regex": "string",
    "$beginsWith": "string",
    "$all": "list",
    **dict.fromkeys(("$elemMatch", "$allMatch", "$keyMapMatch", "$not"), "selector"),
    **dict.fromkeys(("$and", "$or", "$nor"), "selectors"),
}
SHAPES = {
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "count": "a whole number of 0 or more",
    "divisor_remainder": "[divisor, remainder], two whole numbers, the divisor not 0",
    "selector": "an object (a selector)",
    "selectors": "a list of selectors",
}


def selector_problem(selector: Any, path: str = "") -> str | None:
    """The first problem of ``selector``, naming where it is (``at status.$frobnicate``)."""
    if not isinstance(selector, dict):
        return f"{_at(path)}must be an object, not {type(selector).__name__}"
    for key, value in selector.items():
        where = f"{path}.{key}" if path else key
        if not key:
            return f"{_at(where)}an empty field name cannot be queried"
        if not key.startswith("$"):
            problem = selector_problem(value, where) if isinstance(value, dict) else None
        elif key not in OPERATORS:
            return (
                f"unknown operator {key!r} at {where}; CouchDB's are {', '.join(OPERATORS)} "
                "(write a field whose name starts with $ as \\$name)"
            )
        else:
            problem = _argument_problem(key, value, where)
        if problem:
            return problem
    return None


def _argument_problem(operator: str, value: Any, where: str) -> str | None:
    shape = OPERATORS[operator]
    if shape == "selector":
        return selector_problem(value, where)
    if shape == "selectors":
        if not isinstance(value, list):
            return f"{_at(where)}needs {SHAPES[shape]}"
        found = (selector_problem(item, f"{where}[{i}]") for i, item in enumerate(value))
        return next((p for p in found if p), None)
    if shape != "any" and not _fits(shape, value):
        return f"{_at(where)}needs {SHAPES[shape]}, not {value!r}"
    return None


def _at(path: str) -> str:
    return f"at {path}: " if path else ""


def _fits(shape: str, value: Any) -> bool:
    whole = isinstance(value, int) and not isinstance(value, bool)
    if shape == "bool":
        return isinstance(value, bool)
    if shape == "string":
        return isinstance(value, str)
    if shape == "list":
        return isinstance(value, list)
    if shape == "count":
        return whole and value >= 0
    pair = isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)
    return pair and not any(isinstance(v, bool) for v in value) and value[0] != 0
