"""Local training: batches of (user, positive + sampled negatives), one small step function.

``train_step`` is deliberately tiny - batch in, loss out - so that differential
privacy can swap in a private optimizer and per-user bags without touching the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crossfed.shared.data.interactions import Interactions
from crossfed.shared.training.losses import bce_loss
from crossfed.shared.training.sampling import sample_negatives

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Rows of candidates: ``users [B]``, ``items [B, K]`` (a positive, then its negatives), ``labels [B, K]``."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor

    @property
    def scored_pairs(self) -> int:
        return self.items.numel()


@dataclass(frozen=True)
class FitResult:
    loss: float
    positives: int
    scored_pairs: int
    seconds: float

    @property
    def pairs_per_second(self) -> float:
        return self.scored_pairs / self.seconds if self.seconds > 0 else 0.0


def positive_batches(train: Interactions, negatives: int, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
    """One epoch: every training positive once, shuffled, each with ``negatives`` fresh negatives."""
    order = rng.permutation(len(train))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        users = train.users[rows]
        sampled = sample_negatives(users, negatives, train, rng)
        items = np.concatenate([train.items[rows, None], sampled], axis=1)
        labels = np.zeros(items.shape, dtype=np.float32)
        labels[:, 0] = 1.0
        yield Batch(torch.as_tensor(users), torch.as_tensor(items), torch.as_tensor(labels))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = bce_loss(model(batch.users, batch.items), batch.labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def make_optimizer(model: nn.Module, learning_rate: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Interactions,
    *,
    epochs: int,
    batch_size: int,
    negatives: int,
    rng: np.random.Generator,
) -> FitResult:
    """Train for ``epochs`` passes over ``train``; returns the mean loss of the last epoch."""
    model.train()
    started = time.perf_counter()
    pairs = 0
    epoch_loss = 0.0
    for epoch in range(epochs):
        total, steps = 0.0, 0
        for batch in positive_batches(train, negatives, batch_size, rng):
            total += train_step(model, optimizer, batch)
            steps += 1
            pairs += batch.scored_pairs
        epoch_loss = total / max(steps, 1)
        logger.debug("epoch %d: loss %.4f", epoch + 1, epoch_loss)
    model.eval()
    return FitResult(epoch_loss, len(train) * epochs, pairs, time.perf_counter() - started)
