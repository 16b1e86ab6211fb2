"""The one early-stopping rule every model-training mode follows: federated, centralized, local-only.

After each round (an epoch block in the baselines) the mode reports its validation HR@K under
the sampled protocol, averaged over platforms as the progress line does. A round that beats
every earlier one strictly becomes the selected round; after ``patience`` rounds in a row
without such an improvement training stops, and the model of the selected round is the one
tested. ``patience = 0`` trains the whole budget and still selects the best round. One rule
for all modes is what makes their comparison fair: none of them is tested past its best round.

The state is plain values, so a coordinator's checkpoint carries it across a restart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Self

import torch
from torch import nn

#: A model's parameters and buffers by name, as ``state_dict`` gives them.
ModelState = dict[str, torch.Tensor]


@dataclass
class EarlyStopping:
    """Which round is best so far, and whether training should stop."""

    patience: int
    best_round: int = 0
    best_score: float = -math.inf
    rounds_without_improvement: int = 0
    #: The last round reported; the run stopped here if :attr:`should_stop`.
    last_round: int = 0

    def report(self, server_round: int, score: float | None) -> bool:
        """Record ``server_round``'s validation score; True when it is a strict improvement (the new best).

        ``None`` means nobody could measure the round (under DP platforms keep their validation
        figures): the latest model is then the only one to go by, so it is selected and the
        count toward stopping does not move. A NaN score never improves.
        """
        self.last_round = server_round
        if score is None:
            self.best_round = server_round
            return True
        if score > self.best_score:  # False for NaN
            self.best_round, self.best_score = server_round, float(score)
            self.rounds_without_improvement = 0
            return True
        self.rounds_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return 0 < self.patience <= self.rounds_without_improvement

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any], patience: int) -> Self:
        """The saved progress, under the ``patience`` of the current run (a resumed run may wait longer)."""
        return cls(
            patience=patience,
            best_round=int(state["best_round"]),
            best_score=float(state["best_score"]),
            rounds_without_improvement=int(state["rounds_without_improvement"]),
            last_round=int(state["last_round"]),
        )

    def outcome(self) -> dict[str, int]:
        """What ``summary.json`` reports: the round whose model is tested and the last round trained."""
        return {"selected_round": self.best_round, "stopped_round": self.last_round}


def copy_state(model: nn.Module) -> ModelState:
    """A copy of ``model``'s parameters and buffers that later training steps leave as they are."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}
