"""An experiment is data: a TOML file that expands into a grid of cells, each one run.

Format (every run-config key of ``[tool.flwr.app.config]`` may appear in ``base``,
``set`` and ``grid``, spelled as in ``pyproject.toml``)::

    name = "privacy-utility"          # optional, default: the file's stem
    description = "..."               # optional
    seeds = [0, 1]                    # default [0]; an arm may set its own

    [base]                            # applied to every cell
    num-server-rounds = 20

    [[arm]]                           # one or more arms; an arm = modes x its own settings x its grid
    name = "federated-dp"
    modes = ["federated"]             # federated, centralized, local-only
    set = { privacy-unit = "user" }   # optional, on top of base
    grid = { epsilon = [1.0, inf] }   # optional, the Cartesian product of the lists
    seeds = [0]                       # optional, overrides the top-level list for this arm
    audit = { canaries = 200 }        # optional, federated arms only: run each cell as ``crossfed audit``

Keys are checked against :class:`crossfed.shared.config.RunConfig` when the file is read, so a
typo or an out-of-range value stops the sweep before anything runs, naming the file and
the key. Keys the lead engineer adds to ``RunConfig`` (``secagg``, ``noise-mode``) are
accepted the moment they exist; nothing here lists keys by hand.

An arm's ``audit`` table (keys ``canaries``, ``canary-items``, ``canary-kind``, the flags of
``crossfed audit`` with the same defaults) makes each of its cells an audited run: canaries in,
``audit.json`` beside ``summary.json``, and the audit's figures in the sweep's tidy table.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossfed.shared.config import MODES, ConfigError, RunConfig
from crossfed.shared.config.values import nearest_key
from crossfed.shared.errors import UsageError
from crossfed.simulations.audit.kinds import CANARY_KINDS, OWN_ITEMS

#: Set per cell by the sweep itself, never by the experiment.
RESERVED_KEYS = frozenset({"run-dir", "resume", "seed"})
_TOP_KEYS = frozenset({"name", "description", "seeds", "base", "arm"})
_ARM_KEYS = frozenset({"name", "modes", "set", "grid", "seeds", "audit"})
#: An arm's ``audit`` table: each key's default, as for ``crossfed audit``.
AUDIT_DEFAULTS: Mapping[str, Any] = {"canaries": 200, "canary-items": 8, "canary-kind": OWN_ITEMS}
#: The fewest canaries and items per canary an audit can draw (two items are held out like every user's).
_AUDIT_MINIMUM = {"canaries": 2, "canary-items": 4}


class ExperimentError(UsageError, ValueError):
    """A malformed experiment file; the message names the file and the key."""


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a mode, a seed and a complete set of overrides."""

    experiment: str
    arm: str
    mode: str
    seed: int
    #: The gridded keys and their values in this cell (what distinguishes it inside its arm).
    point: Mapping[str, Any]
    #: Every override (base, then the arm's ``set``, then ``point``), keyed as in pyproject.toml.
    overrides: Mapping[str, Any]
    #: The arm's audit settings (every key of :data:`AUDIT_DEFAULTS`), or ``None`` for an ordinary run.
    audit: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        """A stable folder name: the same cell always lands in the same place, so a sweep resumes."""
        parts = [self.arm] + ([self.mode] if self.mode != self.arm else [])
        parts += [f"{key}={_format(value)}" for key, value in self.point.items()]
        parts.append(f"seed{self.seed}")
        return _slug("_".join(parts))

    def config(self, run_dir: Path, data_dir: str = "") -> RunConfig:
        layers: list[Mapping[str, Any]] = [self.overrides, {"seed": self.seed, "run-dir": str(run_dir)}]
        if data_dir:
            layers.append({"data-dir": data_dir})
        return RunConfig.from_mapping(*layers)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    source: Path
    cells: tuple[Cell, ...]
    #: Every config key the file mentions: the tidy table gets one column per key.
    keys: tuple[str, ...] = field(default=())


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate ``path``; every cell's configuration is checked before returning."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such experiment file") from None
    except tomllib.TOMLDecodeError as error:
        raise ExperimentError(f"{path}: not valid TOML: {error}") from None
    where = str(path)
    _no_unknown(raw, _TOP_KEYS, where, "top level")
    name = _typed(raw.get("name", path.stem), str, where, "name")
    description = _typed(raw.get("description", ""), str, where, "description")
    seeds = _seeds(raw.get("seeds", [0]), where, "seeds")
    base = _settings(raw.get("base", {}), where, "base")
    arms = raw.get("arm")
    if not isinstance(arms, list) or not arms:
        raise ExperimentError(f"{where}: needs at least one [[arm]] table (name, modes, optional set and grid)")

    cells: list[Cell] = []
    keys: dict[str, None] = dict.fromkeys(base)
    arm_names: set[str] = set()
    for index, arm in enumerate(arms):
        label = f"arm[{index}]"
        if not isinstance(arm, dict):
            raise ExperimentError(f"{where}: {label} must be a table")
        _no_unknown(arm, _ARM_KEYS, where, label)
        arm_name = _typed(arm.get("name"), str, where, f"{label}.name")
        if arm_name in arm_names:
            raise ExperimentError(f"{where}: {label}.name {arm_name!r} is used twice")
        arm_names.add(arm_name)
        label = f"arm {arm_name!r}"
        modes = _typed(arm.get("modes"), list, where, f"{label}.modes")
        bad = [m for m in modes if m not in MODES]
        if not modes or bad:
            raise ExperimentError(f"{where}: key '{label}.modes' must list modes from {MODES}, got {modes!r}")
        settings = _settings(arm.get("set", {}), where, f"{label}.set")
        grid = _grid(arm.get("grid", {}), where, f"{label}.grid")
        arm_seeds = _seeds(arm.get("seeds", seeds), where, f"{label}.seeds")
        audit = _audit(arm["audit"], modes, where, f"{label}.audit") if "audit" in arm else None
        keys.update(dict.fromkeys(settings))
        keys.update(dict.fromkeys(grid))
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            for mode in modes:
                for seed in arm_seeds:
                    cell = Cell(name, arm_name, mode, seed, point, {**base, **settings, **point}, audit)
                    _check_config(cell, where, label)
                    cells.append(cell)
    duplicates = sorted({c.name for c in cells if sum(o.name == c.name for o in cells) > 1})
    if duplicates:
        raise ExperimentError(f"{where}: cells {duplicates} would share a folder; give the arms distinct names")
    return Experiment(name, description, path, tuple(cells), tuple(keys))


def _seeds(value: Any, where: str, label: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        raise ExperimentError(f"{where}: key '{label}' must be a non-empty list of integers >= 0, got {value!r}")
    return value


def _settings(value: Any, where: str, label: str) -> dict[str, Any]:
    table = _typed(value, dict, where, label)
    known = set(RunConfig().to_flat())
    for key, item in table.items():
        if key in RESERVED_KEYS:
            raise ExperimentError(
                f"{where}: key '{label}.{key}' is set by the sweep itself"
                + (" (use the top-level 'seeds' list)" if key == "seed" else "")
            )
        if key not in known:
            nearest = nearest_key(key, known)
            raise ExperimentError(
                f"{where}: unknown config key '{label}.{key}'"
                + (
                    f"; did you mean '{nearest}'?"
                    if nearest
                    else " (keys are those of [tool.flwr.app.config], listed in docs/reference/configuration.md)"
                )
            )
        if isinstance(item, (dict, list)):
            raise ExperimentError(f"{where}: key '{label}.{key}' must be a single value; grid it under 'grid'")
    return dict(table)


def _audit(value: Any, modes: list[str], where: str, label: str) -> dict[str, Any]:
    """An arm's audit settings with defaults filled in; only a federated run has canaries to audit."""
    table = _typed(value, dict, where, label)
    _no_unknown(table, frozenset(AUDIT_DEFAULTS), where, label)
    if modes != ["federated"]:
        raise ExperimentError(f"{where}: key '{label}' needs modes = [\"federated\"] (an audit is a federated run)")
    audit = {**AUDIT_DEFAULTS, **table}
    for key, smallest in _AUDIT_MINIMUM.items():
        number = audit[key]
        if not isinstance(number, int) or isinstance(number, bool) or number < smallest:
            raise ExperimentError(f"{where}: key '{label}.{key}' must be an integer >= {smallest}, got {number!r}")
    if audit["canary-kind"] not in CANARY_KINDS:
        raise ExperimentError(
            f"{where}: key '{label}.canary-kind' must be one of {list(CANARY_KINDS)}, got {audit['canary-kind']!r}"
        )
    return audit


def _grid(value: Any, where: str, label: str) -> dict[str, list[Any]]:
    table = _typed(value, dict, where, label)
    for key, items in table.items():
        if not isinstance(items, list) or not items:
            raise ExperimentError(f"{where}: key '{label}.{key}' must be a non-empty list of values")
        _settings({key: items[0]}, where, label)  # the key must exist; each value is checked per cell
    return dict(table)


def _check_config(cell: Cell, where: str, label: str) -> None:
    try:
        cell.config(Path("."))
    except ConfigError as error:
        raise ExperimentError(f"{where}: {label}: {error}") from None


def _no_unknown(table: Mapping[str, Any], allowed: frozenset[str], where: str, label: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ExperimentError(f"{where}: unknown key(s) {unknown} at {label}; allowed: {sorted(allowed)}")


def _typed(value: Any, kind: type, where: str, label: str) -> Any:
    if not isinstance(value, kind):
        raise ExperimentError(f"{where}: key '{label}' must be a {kind.__name__}, got {value!r}")
    return value


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", text)
