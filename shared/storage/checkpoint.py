"""The coordinator's files: the checkpoint written after every round, and the final global model.

The checkpoint (global shared parameters, round, history, server-optimizer state, early
stopping's best round and its parameters) is
written atomically with a checksum after every round, so a restarted ServerApp resumes at
the last finished round and never loads half a file. The final global model is what a
platform serves once the run is over. Platforms read both, and they come from a coordinator
they do not trust: both are records of the safe format (``crossfed.shared.storage.checked``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from crossfed.shared.storage.checked import CheckedRecord


@dataclass
class Checkpoint(CheckedRecord):
    FILE_NAME: ClassVar[str] = "checkpoint.pt"

    arrays: dict[str, np.ndarray]
    last_round: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The server optimizer's state (``crossfed.server.strategy.strategy_state``): numpy arrays and lists of them.
    strategy_state: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0  # training time so far (the history's clock)
    startup_seconds: float = 0.0  # start-up so far, over every session of the run
    #: Early stopping's progress (``crossfed.shared.training.early_stopping.EarlyStopping.to_state``):
    #: the best round, its score and the rounds since, so a restarted coordinator stops where it would have.
    early_stopping: dict[str, Any] = field(default_factory=dict)
    #: The global shared parameters of that best round, the ones tested once training stops.
    best_arrays: dict[str, np.ndarray] | None = None


@dataclass
class FinalModel(CheckedRecord):
    """The global shared parameters of the round early stopping selected, with the run configuration that shapes
    the model; ``selected_round`` names it, the round whose user tower each platform keeps for it."""

    FILE_NAME: ClassVar[str] = "global_model.pt"

    arrays: dict[str, np.ndarray]
    config: dict[str, Any]
    selected_round: int = 0
