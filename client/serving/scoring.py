"""Scoring one user against the whole catalog fast: item vectors computed once, reused per request.

Why: serving ranks every catalog item for one user at a time. The item tower does not depend
on the user, so it runs once when the service loads; a request then costs one pass of the
interaction and prediction layers over ``[items, width]``. A served model is one or more
*parts* (the global model or a fine-tuned copy: one; a stacked copy: the frozen global model
and the local model, weighted), each with its own user vector, so fold-in and scoring handle
all of them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from crossfed.shared.model.recommender import Recommender, SharedScorer
from crossfed.shared.model.towers import Tower
from crossfed.shared.training.private_copy import StackedRecommender


@dataclass(frozen=True)
class ScoringPart:
    """One additive term of a served model: ``weight * scorer(user vector, item)``."""

    user_tower: Tower
    scorer: SharedScorer
    weight: float


def scoring_parts(model: nn.Module) -> list[ScoringPart]:
    if isinstance(model, StackedRecommender):
        return [
            *(_scaled(p, float(model.prior_weight.detach())) for p in scoring_parts(model.global_model)),
            *scoring_parts(model.local_model),
        ]
    if isinstance(model, Recommender):
        return [ScoringPart(model.user_tower, model.shared, 1.0)]
    raise TypeError(f"cannot serve a {type(model).__name__}")


def _scaled(part: ScoringPart, weight: float) -> ScoringPart:
    return ScoringPart(part.user_tower, part.scorer, part.weight * weight)


class CatalogScorer:
    """Scores of every catalog item for given user vectors (one per part)."""

    def __init__(self, model: nn.Module) -> None:
        model.eval()
        self.parts = scoring_parts(model)
        with torch.no_grad():
            everything = torch.arange(self.parts[0].scorer.num_items)
            self.item_vectors = [p.scorer.item_tower(everything) for p in self.parts]
            self.item_bias = [p.scorer.item_bias.weight.squeeze(-1) for p in self.parts]

    @property
    def num_items(self) -> int:
        return self.item_vectors[0].shape[0]

    def user_vectors(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """Each part's user vectors ``[U, width]`` for known users' local codes."""
        with torch.no_grad():
            return [p.user_tower(codes) for p in self.parts]

    def logits(self, vectors: list[torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Logits ``[U, K]`` of items ``[U, K]``, differentiable in the user vectors only (fold-in)."""
        total = None
        for part, users, item_vectors, bias in zip(self.parts, vectors, self.item_vectors, self.item_bias):
            pairs = part.scorer.interaction(users.unsqueeze(1).expand(-1, items.shape[1], -1), item_vectors[items])
            term = part.weight * (part.scorer.prediction(pairs).squeeze(-1) + bias[items])
            total = term if total is None else total + term
        assert total is not None
        return total

    def scores(self, vectors: list[torch.Tensor]) -> torch.Tensor:
        """``[U, items]`` scores for user vectors ``[U, width]`` per part."""
        total = None
        with torch.no_grad():
            for part, users, items, bias in zip(self.parts, vectors, self.item_vectors, self.item_bias):
                n_users, n_items = users.shape[0], items.shape[0]
                pairs = part.scorer.interaction(
                    users.unsqueeze(1).expand(-1, n_items, -1), items.unsqueeze(0).expand(n_users, -1, -1)
                )
                term = part.weight * (part.scorer.prediction(pairs).squeeze(-1) + bias)
                total = term if total is None else total + term
        assert total is not None
        return total
