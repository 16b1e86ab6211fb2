"""Which model a platform serves: the snapshot that did best on its own validation users.

Every round a platform ranks its validation items with the current model (global shared
part + its own user tower). The best snapshot so far, by sampled NDCG@k (smoother than
HR on a few hundred users), is what it serves and what the test set measures - model
selection on validation, a single look at test. Federated, local-only and centralized
runs all select the same way, so the comparison stays fair. The snapshot holds user-tower
parameters, so it never leaves the platform.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from shared.evaluation import UserResults


@dataclass
class ServedModel:
    round: int = 0
    score: float = -math.inf
    parameters: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @staticmethod
    def selection_score(results: UserResults) -> float:
        return results.summary()["sampled"]["ndcg"]

    def offer(self, server_round: int, results: UserResults, model: nn.Module) -> bool:
        """Keep ``model`` if it beats the snapshot held so far; True when it was kept."""
        score = self.selection_score(results)
        if score <= self.score:
            return False
        self.round, self.score = server_round, score
        self.parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
        return True

    def to_state(self) -> dict[str, Any]:
        return {"round": self.round, "score": self.score, "parameters": self.parameters}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "ServedModel":
        return cls(**state) if state else cls()


@contextmanager
def swapped_parameters(model: nn.Module, parameters: dict[str, torch.Tensor] | None) -> Iterator[nn.Module]:
    """Temporarily give ``model`` other parameters (no-op for None); restores them afterwards."""
    if parameters is None:
        yield model
        return
    current = {name: p.detach().clone() for name, p in model.named_parameters()}
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in parameters.items():
            own[name].copy_(value)
    try:
        yield model
    finally:
        with torch.no_grad():
            for name, value in current.items():
                own[name].copy_(value)
