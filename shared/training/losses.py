"""Implicit-feedback losses over rows of candidates (a positive and its negatives, or a user's bag)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Binary cross-entropy on logits ``[B, K]``.

    ``reduction="none"`` gives one loss per row (the mean over its valid entries):
    with rows = users this is the per-user loss that user-level DP clips.
    """
    losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if mask is None:
        mask = torch.ones_like(losses)
    losses = losses * mask
    if reduction == "none":
        return losses.sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.sum() / mask.sum().clamp_min(1.0)
    raise ValueError(f"unknown reduction {reduction!r}")
