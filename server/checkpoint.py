"""The coordinator's checkpoint: global shared parameters, round, history, server-optimizer state.

Written atomically with a checksum after every round, so a restarted ServerApp
resumes at the last finished round and never loads half a file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.storage import load_checked, save_checked

CHECKPOINT_FILE = "checkpoint.pt"
FINAL_MODEL_FILE = "global_model.pt"


@dataclass
class Checkpoint:
    arrays: dict[str, np.ndarray]
    last_round: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    strategy_state: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    def save(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / CHECKPOINT_FILE
        save_checked(path, asdict(self))
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> "Checkpoint | None":
        path = Path(run_dir) / CHECKPOINT_FILE
        return cls(**load_checked(path)) if path.exists() else None


def save_final_model(run_dir: str | Path, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> Path:
    path = Path(run_dir) / FINAL_MODEL_FILE
    save_checked(path, {"arrays": arrays, "config": config})
    return path
