"""One user's bag - a sample of their positives and negatives for each - as one DP sample.

Under user-level DP the privacy unit is the user, so a step must see each sampled user's
data as one row: ``items [users, bag]``. Bags are capped at ``bag_positives`` positives
(a uniform sample of the user's training items), which also bounds the work per user.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from crossfed.shared.data.interactions import Interactions
from crossfed.shared.training.losses import bce_loss
from crossfed.shared.training.sampling import sample_negatives

PADDING = -1.0


def user_bags(
    users: np.ndarray,
    items_by_user: list[np.ndarray],
    train: Interactions,
    *,
    positives: int,
    negatives: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``items [U, L]`` and ``targets [U, L]`` (1 positive, 0 negative, -1 padding)."""
    chosen = [rng.choice(items_by_user[u], size=min(positives, len(items_by_user[u])), replace=False) for u in users]
    # Every user's negatives in one vectorised draw, after all the positives: the order the stream is consumed in.
    counts = np.array([len(pos) for pos in chosen], dtype=np.int64)
    drawn = sample_negatives(np.repeat(np.asarray(users, dtype=np.int64), counts), negatives, train, rng)
    splits = np.split(drawn.reshape(-1), np.cumsum(counts * negatives)[:-1]) if len(chosen) else []
    return pack_bags(list(zip(chosen, splits, strict=True)))


def pack_bags(rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded ``items [U, L]`` / ``targets [U, L]`` pair from each user's (positives, negatives).

    Every bag consumer (DP training, fold-in) reads this one layout, so :class:`BagLoss`'s
    padding mask means the same thing everywhere.
    """
    width = max(1, max((len(p) + len(n) for p, n in rows), default=0))
    items = np.zeros((len(rows), width), dtype=np.int64)
    targets = np.full(items.shape, PADDING, dtype=np.float32)
    for row, (positives, drawn) in enumerate(rows):
        items[row, : len(positives) + len(drawn)] = np.concatenate([positives, drawn])
        targets[row, : len(positives)] = 1.0
        targets[row, len(positives) : len(positives) + len(drawn)] = 0.0
    return torch.as_tensor(items), torch.as_tensor(targets)


class BagLoss(nn.Module):
    """Binary cross-entropy over bags; ``reduction="none"`` gives one loss per bag.

    Opacus' ghost clipping sets ``reduction`` to ``"none"`` to get per-sample losses, so
    the target carries the padding mask (-1) instead of a third argument.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        mask = (targets != PADDING).to(logits.dtype)
        return bce_loss(logits, targets.clamp_min(0.0), mask, reduction=self.reduction)
