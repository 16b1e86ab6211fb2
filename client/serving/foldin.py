"""Fold-in: a user's embedding updated from their interactions, without a federation round.

Why it is safe and cheap: a user's vector is ``id embedding + feature embeddings``; with every
other parameter frozen (the shared item, interaction and prediction layers, the feature
embeddings other users share), a gradient step on the vector is a step on that user's own id
row and nothing else. A few steps per user take milliseconds, touch no shared parameter, so
nothing about the federation changes, and other users' recommendations stay as they were.

A new user starts from the mean vector of the platform users who share their features (the
cold-start segment), a known user from their trained vector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from crossfed.client.serving.scoring import CatalogScorer, ScoringPart
from crossfed.shared.privacy.bags import BagLoss, pack_bags

logger = logging.getLogger(__name__)

#: Positives per user per step (a uniform sample of the history when it is longer).
MAX_POSITIVES = 64


def fold_in(
    scorer: CatalogScorer,
    start: Sequence[torch.Tensor],
    histories: Sequence[np.ndarray],
    *,
    steps: int,
    learning_rate: float,
    negatives: int = 4,
    seed: int = 0,
) -> list[torch.Tensor]:
    """User vectors ``[U, width]`` per part, after ``steps`` Adam steps on each user's own history.

    ``scorer``: the served model with its item vectors computed once (constants here);
    ``start[j]``: the users' vectors in part ``j`` before fold-in; ``histories[u]``: item codes of
    user ``u`` (every interaction the platform knows, new ones included). Only these vectors
    are optimised: no parameter of any model receives a gradient.
    """
    vectors = [s.detach().clone().requires_grad_(True) for s in start]
    non_empty = [h for h in histories if len(h)]
    if steps == 0 or not non_empty:
        return [v.detach() for v in vectors]
    histories = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
    # Negatives come from each user's complement, computed once: rejection sampling would stall
    # for a user who has interacted with nearly the whole catalog.
    complements = [np.setdiff1d(np.arange(scorer.num_items), h, assume_unique=True) for h in histories]
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(vectors, lr=learning_rate)
    criterion = BagLoss(reduction="none")
    for _ in range(steps):
        items, targets = _bags(histories, complements, negatives, rng)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(scorer.logits(vectors, items), targets).sum()
        loss.backward(inputs=vectors)  # gradients reach the user vectors only
        optimizer.step()
    return [v.detach() for v in vectors]


def _bags(
    histories: Sequence[np.ndarray], complements: Sequence[np.ndarray], negatives: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's bag of positives and negatives drawn from the items they never touched."""
    rows = []
    for history, complement in zip(histories, complements):
        positives = rng.choice(history, size=min(MAX_POSITIVES, len(history)), replace=False)
        drawn = rng.choice(complement, size=len(positives) * negatives) if len(complement) else np.zeros(0, np.int64)
        rows.append((positives, drawn))
    return pack_bags(rows)


def segment_start(parts: Sequence[ScoringPart], segment_users: np.ndarray) -> list[torch.Tensor]:
    """``[1, width]`` per part: the mean vector of the segment's users (a newcomer's starting point)."""
    out = []
    with torch.no_grad():
        for part in parts:
            if len(segment_users):
                out.append(part.user_tower(torch.as_tensor(segment_users)).mean(dim=0, keepdim=True))
            else:
                width = part.scorer.item_tower(torch.zeros(1, dtype=torch.long)).shape[-1]
                out.append(torch.zeros(1, width))
    return out
