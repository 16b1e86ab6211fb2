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

from shared.interactions import Interactions
from shared.privacy.bags import BagLoss, user_bags
from shared.scoring import ScoringPart, part_logits

logger = logging.getLogger(__name__)

#: Positives per user per step (a uniform sample of the history when it is longer).
MAX_POSITIVES = 64


def fold_in(
    parts: Sequence[ScoringPart],
    start: Sequence[torch.Tensor],
    histories: Sequence[np.ndarray],
    num_items: int,
    *,
    steps: int,
    learning_rate: float,
    negatives: int = 4,
    seed: int = 0,
) -> list[torch.Tensor]:
    """User vectors ``[U, width]`` per part, after ``steps`` Adam steps on each user's own history.

    ``start[j]``: the users' vectors in part ``j`` before fold-in; ``histories[u]``: item codes of
    user ``u`` (every interaction the platform knows, new ones included). Only these vectors
    are optimised: no parameter of any model receives a gradient.
    """
    vectors = [s.detach().clone().requires_grad_(True) for s in start]
    non_empty = [h for h in histories if len(h)]
    if steps == 0 or not non_empty:
        return [v.detach() for v in vectors]
    histories = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
    local = np.arange(len(histories))
    known = Interactions(
        users=np.repeat(local, [len(h) for h in histories]), items=np.concatenate(histories),
        timestamps=np.zeros(sum(len(h) for h in histories), dtype=np.int64),
        num_users=len(histories), num_items=num_items,
    )
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(vectors, lr=learning_rate)
    criterion = BagLoss(reduction="none")
    for _ in range(steps):
        items, targets = user_bags(local, histories, known, positives=MAX_POSITIVES, negatives=negatives, rng=rng)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(part_logits(list(parts), vectors, items), targets).sum()
        loss.backward(inputs=vectors)  # gradients reach the user vectors only
        optimizer.step()
    return [v.detach() for v in vectors]


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
