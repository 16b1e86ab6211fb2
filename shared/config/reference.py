"""The configuration reference page, generated from the section fields (their defaults and docs).

``python -m crossfed.shared.config`` writes it to ``docs/reference/configuration.md``; a test
keeps the committed page equal to what this module generates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossfed.shared.config.run import RunConfig
from crossfed.shared.config.values import key_of

REFERENCE_PATH = Path("docs") / "reference" / "configuration.md"

_INTRODUCTION = """\
# Configuration

Every key lives in `[tool.flwr.app.config]` of `pyproject.toml`; the defaults run the main job.
The same keys are flags of the research CLI (`--learning-rate 0.001`), keys of sweep files,
and may be pinned by an operator in a SuperNode's node config. A key that is not listed here
is refused with the nearest valid name, and a value outside its range is refused before
anything runs.

In code, `crossfed.shared.config.RunConfig` groups the keys by section:
key `learning-rate` is `config.training.learning_rate`.

This page is generated from `shared/config/sections.py` by `python -m crossfed.shared.config`;
do not edit it by hand.
"""


def toml_value(value: Any) -> str:
    """A default as it is spelled in ``pyproject.toml``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def reference_markdown() -> str:
    """The Markdown reference of every key: one table per section, key, default and meaning."""
    parts = [_INTRODUCTION]
    for attribute, section in RunConfig.sections().items():
        doc = (section.__doc__ or "").strip()
        rows = [
            f"## {section.title}",
            "",
            f"{doc} In code: `config.{attribute}` (`{section.__name__}`).",
            "",
            "| key | default | meaning |",
            "|---|---|---|",
        ]
        for declared in section.settings():
            key, default = key_of(declared.name), toml_value(declared.default)
            rows.append(f"| `{key}` | `{default}` | {declared.metadata['doc']} |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def write_reference(root: Path) -> Path:
    """Write the reference page under the repository ``root``; returns its path."""
    path = root / REFERENCE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference_markdown(), encoding="utf-8")
    return path
