"""The coordinator's checkpoint: global shared parameters, round, history, server-optimizer state.

Written atomically with a checksum after every round, so a restarted ServerApp
resumes at the last finished round and never loads half a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from crossfed.shared.storage.checked import CheckedRecord, save_checked

CHECKPOINT_FILE = "checkpoint.pt"
FINAL_MODEL_FILE = "global_model.pt"


@dataclass
class Checkpoint(CheckedRecord):
    FILE_NAME: ClassVar[str] = CHECKPOINT_FILE

    arrays: dict[str, np.ndarray]
    last_round: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    strategy_state: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0  # training time so far (the history's clock)
    startup_seconds: float = 0.0  # start-up so far, over every session of the run


def save_final_model(run_dir: str | Path, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> Path:
    path = Path(run_dir) / FINAL_MODEL_FILE
    save_checked(path, {"arrays": arrays, "config": config})
    return path
