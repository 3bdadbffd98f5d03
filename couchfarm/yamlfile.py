"""Read a YAML file (settings, topologies) with the line of every key, refusing what YAML lets pass.

PyYAML keeps the last of two equal keys in a mapping without a word, so a node's URL or a setting
written twice silently loses its first value: here a repeated key is an error naming both lines.
A file that is not UTF-8 text (a binary given by mistake) or holds control characters fails with
its byte offset and line. Messages never quote the file's lines: a settings file can hold a
password, and YAML's own messages print the line around the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from couchfarm.errors import ConfigError

Lines = dict[tuple[Any, ...], int]


def read_yaml(path: Path) -> tuple[dict[str, Any], Lines]:
    """A YAML mapping and the 1-based line of every key path in it; ``ConfigError`` naming
    file:line when the file cannot be read, is not text, is not YAML or repeats a key."""
    text = _read_text(path)
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(
            f"{path}:{line}: not a text file: it contains the control character U+{code:04X}",
            source=f"{path}:{line}",
        ) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(path, exc) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})", source=str(path)) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping", source=str(path))
    repeated = duplicate_keys(node)
    if repeated:
        first = f"{path}:{repeated[0][0]}"
        raise ConfigError(
            "; ".join(f"{path}:{line}: {problem}" for line, problem in repeated), field="", source=first
        )
    return data, key_lines(node)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): is it the YAML file you meant?",
            source=f"{path}:{line}",
        ) from None


def _syntax_error(path: Path, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    context = exc.context
    if context and exc.context_mark and mark and exc.context_mark.line != mark.line:
        context += f" that starts at line {exc.context_mark.line + 1}"  # an unclosed quote, say
    what = "; ".join(str(p) for p in (context, exc.problem) if p)
    column = f" (column {mark.column + 1})" if mark else ""
    return ConfigError(f"{where}: not valid YAML: {what}{column}", source=where)


def key_lines(node: Any, path: tuple[Any, ...] = (), lines: Lines | None = None) -> Lines:
    """The 1-based line of every key path of a composed YAML node: a key's own line (not its
    value's, as for block values), so errors point at the key that is wrong."""
    lines = {} if lines is None else lines
    lines.setdefault(path, node.start_mark.line + 1)
    for key, value, sub in _children(node, path):
        if key is not None:
            lines[sub] = key.start_mark.line + 1
        key_lines(value, sub, lines)
    return lines


def duplicate_keys(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[int, str]]:
    """``(line, message)`` for every key that repeats an earlier key of the same mapping."""
    found: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            line = key.start_mark.line + 1
            ident = (key.tag, str(key.value))
            if ident in seen and ident[0] != "tag:yaml.org,2002:merge":
                name = ".".join(str(p) for p in (*path, key.value))
                found.append((line, f"{name} is given twice (first at line {seen[ident]}): remove one"))
            seen.setdefault(ident, line)
    for _, value, sub in _children(node, path):
        found.extend(duplicate_keys(value, sub))
    return sorted(found)


def _children(node: Any, path: tuple[Any, ...]) -> list[tuple[Any, Any, tuple[Any, ...]]]:
    """(key node or None, value node, key path) of each entry of a mapping or sequence node."""
    if isinstance(node, yaml.MappingNode):
        return [(key, value, (*path, key.value)) for key, value in node.value]
    if isinstance(node, yaml.SequenceNode):
        return [(None, item, (*path, i)) for i, item in enumerate(node.value)]
    return []
