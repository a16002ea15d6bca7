"""Base classes and file loading for configuration models.

All configuration is a pydantic v2 model with ``extra="forbid"`` (a misspelt key is an error, never a
silent default), bounds on numbers and units in field names.  Files are YAML or JSON; errors name the
file, the key path and what is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from scopectl.errors import ConfigError

__all__ = ["FrozenModel", "StrictModel", "format_validation_error", "load_mapping", "load_model"]


class StrictModel(BaseModel):
    """A configuration model that forbids unknown keys and validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, str_strip_whitespace=True)


class FrozenModel(BaseModel):
    """An immutable, serialisable model (plans, events, records)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def load_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file that must contain a mapping.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, not YAML/JSON, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found.", hint="Check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc}).") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {first}."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}."
        )
    return data


def format_validation_error(exc: ValidationError, source: str, *, section: str | None = None) -> str:
    """Turn a pydantic error into one line naming the source, the key path and the problem.

    With ``section`` (a top-level key), only the errors under that key are reported, and the key is named
    as part of the source: ``rig.yaml: led_ring: url: ...``.
    """
    errors = [(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
    if section is not None:
        errors = [(loc[1:], msg, kind) for loc, msg, kind in errors if loc[:1] == (section,)]
        source = f"{source}: {section}"
    parts = []
    for loc, msg, kind in errors[:3]:
        if kind == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif kind == "missing":
            msg = "required key is missing"
        parts.append(f"{'.'.join(str(p) for p in loc) or '(top level)'}: {msg}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"{source}: " + "; ".join(parts) + more


def load_model(model: type[M], path: Path | str) -> M:
    """Load and validate a configuration model from a YAML or JSON file.

    Raises
    ------
    ConfigError
        Naming the file, the offending key and the allowed values.
    """
    path = Path(path)
    data = load_mapping(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path)) + ".") from None
