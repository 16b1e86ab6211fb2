"""The building blocks of every configuration section: documented fields, range checks, typed values.

A key's default, type and meaning are written once, on its dataclass field; the reference
page, the flat ``foo-bar`` names and the range checks are all derived from that field.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import Field, field, fields
from typing import Any, ClassVar

from crossfed.shared.errors import UsageError


class ConfigError(UsageError, ValueError):
    """A configuration key is unknown or holds a value outside its allowed range."""


def setting(default: Any, doc: str) -> Any:
    """A section field with its default and the one-line meaning shown in the reference page."""
    return field(default=default, metadata={"doc": doc})


def key_of(name: str) -> str:
    """The flat run-config key (``learning-rate``) of a field name (``learning_rate``)."""
    return name.replace("_", "-")


class Section:
    """Shared behaviour of the frozen section dataclasses composed in ``RunConfig``."""

    #: Heading of the section in the reference page.
    title: ClassVar[str] = ""

    @classmethod
    def settings(cls) -> tuple[Field[Any], ...]:
        return fields(cls)  # type: ignore[arg-type]

    def to_flat(self) -> dict[str, Any]:
        """This section's keys (``foo-bar``) and values."""
        return {key_of(f.name): getattr(self, f.name) for f in self.settings()}

    def validate(self) -> None:
        """Reject out-of-range values of this section's own keys; sections override it."""


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise a :class:`ConfigError` naming ``key``, its ``value`` and the ``allowed`` range unless ``ok``."""
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r} is out of range: expected {allowed}")


def nearest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid key closest to ``key`` (what a misspelling most likely meant), if any is close."""
    matches = difflib.get_close_matches(key, sorted(valid), n=1)
    return matches[0] if matches else None


def unknown_key(key: str, source: str, valid: Iterable[str]) -> ConfigError:
    """The error for a key no section declares, suggesting the nearest valid name (a misspelling)."""
    nearest = nearest_key(key, valid)
    hint = f"; did you mean '{nearest}'?" if nearest else " (every key is listed in docs/reference/configuration.md)"
    return ConfigError(f"unknown key '{key}' in {source}{hint}")


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a TOML/CLI value to the field's type, naming the key on failure."""
    kind = annotation if isinstance(annotation, type) else _TYPES.get(str(annotation))
    if kind is None:
        return value
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return lowered in {"true", "1", "yes"}
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key_of(name)}' = {value!r} is not a valid {kind.__name__}") from None
