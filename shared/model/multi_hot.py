"""A multi-hot feature's linear layer, run as a bag of index lookups.

A multi-hot feature (genres, title words) maps a row's mean-normalised indicator vector
``x`` (``V`` columns) to ``W x`` with a bias-free ``[dim, V]`` weight. ``x`` has a handful
of non-zero entries (MovieLens titles: 1.4 of 256 words on average, 8 at most), so the
dense product spends almost all of its work on zeros, in the forward pass, in the weight
gradient and in every per-sample gradient norm differential privacy needs. Here each row
keeps only its non-zero columns and their values, and ``W x`` is a weighted sum of those
columns of ``W`` (``F.embedding_bag``): the same function, the same parameter (shape,
name and initialisation of the ``nn.Linear`` it replaces), at a cost proportional to the
row's words rather than to the vocabulary.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def index_bags(values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A table ``x [n, V]`` as padded bags: ``tokens [n, M]`` (its non-zero columns) and ``weights [n, M]``.

    Padding is column 0 with weight 0, so it adds nothing; ``M`` is the most non-zero
    entries of any row (at least 1).
    """
    values = np.asarray(values, dtype=np.float32)
    rows, columns = np.nonzero(values)  # row-major: each row's columns in ascending order
    counts = np.bincount(rows, minlength=values.shape[0])
    width = max(1, int(counts.max(initial=0)))
    slots = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    tokens = np.zeros((values.shape[0], width), dtype=np.int64)
    weights = np.zeros((values.shape[0], width), dtype=np.float32)
    tokens[rows, slots] = columns
    weights[rows, slots] = values[rows, columns]
    return torch.as_tensor(tokens), torch.as_tensor(weights)


class MultiHotEmbedding(nn.Module):
    """``(tokens, weights) -> W x`` for rows given as index bags (:func:`index_bags`).

    The bags are inputs, not buffers of this module: the feature table is data its owner
    (``FeatureEmbedding``) holds, and a trained layer with buffers is one Opacus refuses.
    """

    def __init__(self, vocabulary: int, dim: int) -> None:
        super().__init__()
        self.in_features, self.out_features = vocabulary, dim
        self.weight = nn.Parameter(torch.empty(dim, vocabulary))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation: the same model

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``[..., dim]`` vectors for bags ``tokens [..., M]`` with ``weights [..., M]``."""
        flat = _WeightedBagSum.apply(
            tokens.reshape(-1, tokens.shape[-1]),
            weights.reshape(-1, weights.shape[-1]).to(self.weight.dtype),
            self.weight.t().contiguous(),  # embedding_bag's fast kernel needs the [V, dim] table contiguous
        )
        return flat.reshape(*tokens.shape[:-1], self.out_features)


class _WeightedBagSum(torch.autograd.Function):
    """``embedding_bag(tokens, table, weights, mode="sum")`` whose table gradient skips the padding.

    Torch's own backward for weighted bags sorts every (bag, slot) pair, padding included;
    scattering only the non-zero slots' rows into the table is several times faster and
    gives the same sum. No gradient flows to the tokens or weights (they are data).
    """

    @staticmethod
    def forward(ctx, tokens: torch.Tensor, weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(tokens, weights)
        ctx.vocabulary = table.shape[0]
        return F.embedding_bag(tokens, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        tokens, weights = ctx.saved_tensors
        bag, slot = torch.nonzero(weights, as_tuple=True)
        table = torch.zeros(ctx.vocabulary, grad.shape[1], dtype=grad.dtype, device=grad.device)
        return None, None, table.index_add_(0, tokens[bag, slot], grad[bag] * weights[bag, slot, None])
