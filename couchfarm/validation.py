"""Optional document validation: a JSON Schema file or a pydantic model given by dotted path.

An invalid leaf or an invalid merge result is never written: the engine dead-letters the document
with the validation errors. Schemas are loaded once and cached per path.
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from couchfarm.errors import ConfigError


class Validator(Protocol):
    def errors(self, body: dict[str, Any]) -> list[str]:
        """Human-readable problems, empty when the body is valid."""
        ...


class JsonSchemaValidator:
    def __init__(self, schema: dict[str, Any], source: str) -> None:
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(
                f"schema {source} is not a valid JSON Schema: {exc.message}", source=source
            ) from None
        self._validator = cls(schema)

    def errors(self, body: dict[str, Any]) -> list[str]:
        found = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found]


class ModelValidator:
    def __init__(self, model: Any) -> None:
        self._model = model

    def errors(self, body: dict[str, Any]) -> list[str]:
        from pydantic import ValidationError

        try:
            self._model.model_validate(body)
        except ValidationError as exc:
            return [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        return []


@lru_cache(maxsize=64)
def load_validator(spec: str, base_dir: str | None = None) -> Validator:
    """A validator for ``spec``: a ``.json`` schema file (relative to ``base_dir`` when not found as
    given) or ``package.module:Model`` naming a pydantic model."""
    path = Path(spec)
    if base_dir and not path.is_absolute() and not path.exists():
        path = Path(base_dir) / spec
    if path.suffix == ".json" or path.exists():
        try:
            return JsonSchemaValidator(json.loads(path.read_text()), str(path))
        except OSError as exc:
            raise ConfigError(
                f"schema file {path}: {exc.strerror}", field="schema", source=str(path)
            ) from None
        except ValueError as exc:
            raise ConfigError(
                f"schema file {path} is not JSON: {exc}", field="schema", source=str(path)
            ) from None
    module, _, name = spec.partition(":")
    try:
        model = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"schema {spec!r}: not a JSON file nor module:Model ({exc})", field="schema"
        ) from None
    if not hasattr(model, "model_validate"):
        raise ConfigError(f"schema {spec!r} is not a pydantic model", field="schema")
    return ModelValidator(model)
